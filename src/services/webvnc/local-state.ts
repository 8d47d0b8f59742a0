import { daemonFiles } from '../daemon-files.js'

/** What a running WebVNC bridge says about itself (`<state>/webvnc/<lease ID>.json`). */
export interface BridgeRecord {
  pid: number
  leaseId: string
  slug: string
  brokerUrl: string
  portalUrl: string
  slots: number
  connected: number
  relaying: number
  localPort?: number
  lastProblem?: string
  daemon: boolean
  startedAt: string
  updatedAt: string
}

const files = daemonFiles<BridgeRecord>('webvnc', 'webvnc')
export const { recordPath, pidPath, logPath, ensureDir, writeRecord, readRecord, readPid, removeFiles } = files
/** Starts the detached daemon (`spawn`) and stops it (`stop`), see services/daemon-files.ts. */
export const daemon = { spawn: files.spawn, stop: files.stop }
export const webvncDir = files.dir
export const knownBridges = files.known
export const bridgeAlive = files.alive
