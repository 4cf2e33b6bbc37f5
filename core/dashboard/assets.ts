// The files the dashboard serves, by URL path: the page's own (core/dashboard/page) and uPlot's
// dist files, found by resolving the installed package (never a CDN, so the page works offline).
import { access } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { DashboardListenError } from './address.ts'

export interface Asset {
  readonly file: string
  readonly type: string
}

const PAGE_FILES: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/charts.js': ['charts.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8']
}

/** The page folder: beside this module under tsx; from the compiled dist/core/dashboard, the package's core/dashboard/page. */
async function pageDir (): Promise<string> {
  const here = fileURLToPath(new URL('./page/', import.meta.url))
  const fromDist = fileURLToPath(new URL('../../../core/dashboard/page/', import.meta.url))
  for (const dir of [here, fromDist]) {
    if (await access(join(dir, 'index.html')).then(() => true, () => false)) return dir
  }
  throw new DashboardListenError(`the dashboard's page is missing (looked in ${here} and ${fromDist})`)
}

/** URL path -> file, resolved once when the dashboard starts (a missing file fails the start, not a page load). */
export async function dashboardAssets (): Promise<Map<string, Asset>> {
  const dir = await pageDir()
  const assets = new Map<string, Asset>()
  for (const [path, [name, type]] of Object.entries(PAGE_FILES)) assets.set(path, { file: join(dir, name), type })
  const require = createRequire(import.meta.url)
  try {
    assets.set('/vendor/uplot.js', { file: require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' })
    assets.set('/vendor/uplot.css', { file: require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' })
  } catch (err) {
    throw new DashboardListenError('the dashboard needs the uplot package (npm install): it is not installed', { cause: err })
  }
  for (const a of assets.values()) {
    await access(a.file).catch(err => { throw new DashboardListenError(`the dashboard's file ${a.file} is missing`, { cause: err }) })
  }
  return assets
}
