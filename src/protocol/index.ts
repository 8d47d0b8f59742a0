export * from './ids.js'
export * from './errors.js'
export * from './leases.js'
