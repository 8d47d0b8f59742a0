import Stop from './stop.js'

/** `release` is `stop` under the reference CLI's other name. */
export default class Release extends Stop {
  static override summary = 'Release a lease (same as stop)'
  static override examples = ['<%= config.bin %> release blue-prawn']
}
