import { CrabboxError } from '../../errors.js'
import { runUntilStopped, SIGNAL_EXIT } from '../stop-signals.js'
import { CODE_SERVER_HOST, CODE_SERVER_PORT } from '../../protocol/code.js'
import { BrokerError, type BrokerClient } from '../../transport/broker/client.js'
import type { Lease } from '../../providers/types.js'
import type { ServiceContext } from '../context.js'
import { brokerBridgeLease } from '../bridge-lease.js'
import { openUrl } from '../open-url.js'
import {
  CodeBridgeFailure,
  CodeServerUnavailable,
  codeRefusal,
  codeRescue,
  describeCodeFailure,
  mintCodeTicket,
  probeCodeServer,
  startCodeBridge,
} from './bridge.js'

export { CodeBridgeFailure } from './bridge.js'

export interface CodeFlags {
  id: string
  localPort?: number
  open?: boolean
}

export interface CodeHooks {
  /** Lines for stdout (what the bridge is, where to look). */
  out: (line: string) => void
  /** Lines for stderr (reconnects, problems). */
  err: (line: string) => void
}

export const codePortalUrl = (broker: BrokerClient, leaseId: string) => `${broker.url}/portal/leases/${encodeURIComponent(leaseId)}/code/`

/** The lease through the broker: the code bridge's relay and the portal live there, so direct mode has none. */
async function codeLease(context: ServiceContext, id: string): Promise<{ lease: Lease; broker: BrokerClient }> {
  try {
    return await brokerBridgeLease(context, id, {
      message: 'crabbox code needs a broker: the code bridge relay and the portal editor live there',
      hint: 'Configure one (`crabbox login`)',
    })
  } catch (error) {
    if (error instanceof BrokerError && error.status === 0)
      throw new CodeBridgeFailure(
        { problem: `broker: ${error.message}`, rescue: codeRescue(id).slice(0, 1) },
        'error',
        'broker_unreachable',
      )
    throw error
  }
}

/**
 * `crabbox code`: runs the code bridge in this process until it is stopped or fails. Before
 * the socket: one ticket (the broker is reachable, the lease has code) and an HTTP answer
 * from code-server on the runner, each failing at once with its layer named.
 */
export async function runCodeBridge(context: ServiceContext, flags: CodeFlags, hooks: CodeHooks): Promise<void> {
  const { lease, broker } = await codeLease(context, flags.id)
  const rescue = codeRescue(lease.id)
  let ticket: string
  try {
    ticket = await mintCodeTicket(broker, lease.id)
  } catch (error) {
    throw (
      codeRefusal(error, lease.id) ?? new CodeBridgeFailure({ problem: describeCodeFailure(error), rescue }, 'error', 'broker_unreachable')
    )
  }
  const { SshPool } = await import('../../transport/ssh/pool.js')
  const pool = new SshPool()
  try {
    await probeCodeServer(() => pool.forwardOut(lease.ssh, CODE_SERVER_HOST, CODE_SERVER_PORT))
  } catch (error) {
    await pool.closeAll()
    if (error instanceof CodeServerUnavailable)
      throw new CodeBridgeFailure({ problem: `code-server: ${error.message}`, rescue: rescue.slice(1) }, 'error', 'code_server_unavailable')
    if (error instanceof CrabboxError)
      throw new CodeBridgeFailure({ problem: `ssh: ${error.message}`, rescue }, error.exitCode === 7 ? 'ssh' : 'error', 'ssh')
    throw error
  }

  const portal = codePortalUrl(broker, lease.id)
  let announced = false
  const bridge = startCodeBridge(
    {
      leaseId: lease.id,
      broker,
      access: context.config.broker.access,
      target: lease.ssh,
      pool,
      localPort: flags.localPort,
      log: hooks.err,
      onConnected: (connected) => {
        if (!connected || announced) return
        announced = true
        hooks.out(`code bridge for ${lease.slug || lease.id} (${lease.id}): agent socket open to ${broker.url}`)
        hooks.out(`portal: ${portal}`)
        if (bridge?.localPort !== undefined) hooks.out(`local: http://127.0.0.1:${bridge.localPort}/`)
        if (flags.open && !openUrl(portal)) hooks.err('could not open a browser here; open the portal URL above')
      },
    },
    ticket,
  )

  const stoppedBy = await runUntilStopped(bridge, () => pool.closeAll())
  if (stoppedBy) {
    throw new CodeBridgeFailure(
      { problem: `bridge: the code bridge was stopped (${stoppedBy}); the portal editor lost its connection`, rescue: rescue.slice(0, 1) },
      SIGNAL_EXIT[stoppedBy] ?? 1,
      'bridge_stopped',
    )
  }
}
