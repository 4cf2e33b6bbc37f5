// Worker entry in plain JS: registers tsx's loader in this thread, then loads the TypeScript worker.
// (A worker does not inherit the tsx loader of a process started through bin/layerswarm.js.)
import { register } from 'tsx/esm/api'

register()
await import('./worker.ts')
