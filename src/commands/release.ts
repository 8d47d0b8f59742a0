import Stop from './stop.js'

/** `release` is `stop` under its other name, kept for existing crabbox users. */
export default class Release extends Stop {
  static override summary = 'Release a lease (same as stop)'
  static override examples = ['<%= config.bin %> release blue-prawn']
}
