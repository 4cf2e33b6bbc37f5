// Run identity: the manifest every node of a run agrees on, and the run id derived from it.
export * from './manifest.ts'
