import { daemonFiles } from '../daemon-files.js'

/** What a running `egress start` says about itself (`<state>/egress/<lease ID>.json`). */
export interface EgressRecord {
  pid: number
  leaseId: string
  slug: string
  sessionID: string
  brokerUrl: string
  listen: string
  allow: string[]
  profile?: string
  hostConnected: boolean
  clientListening: boolean
  daemon: boolean
  startedAt: string
  updatedAt: string
}

const files = daemonFiles<EgressRecord>('egress', 'egress')
export const { recordPath, pidPath, logPath, ensureDir, writeRecord, readRecord, readPid, removeFiles } = files
/** Starts the detached daemon (`spawn`) and stops it (`stop`), see services/daemon-files.ts. */
export const daemon = { spawn: files.spawn, stop: files.stop }
export const egressDir = files.dir
export const egressAlive = files.alive
