/**
 * Example: a CLI that logs in with the device flow and calls an API with the bound token.
 *
 *   node dist/examples/client-login.js https://auth.example.com deploy-cli https://api.example.com/me
 *
 * Compiled with the rest of the project (tsconfig includes examples/), so it cannot rot.
 */
import {
  ClientError,
  DeviceClient,
  OAuthResponseError,
  formatDuration,
  formatInstructions,
  openTokenStore,
  renderTerminalQr,
} from '../src/client/index.js' // in your project: from 'devicegate/client'

export async function main(issuer: string, clientId: string, apiUrl: string): Promise<number> {
  // OS keyring when there is one; otherwise AES-256-GCM files (0600) under ~/.config/devicegate.
  const { store, fallbackReason } = await openTokenStore()
  if (fallbackReason) console.error(`note: ${fallbackReason}`)

  const client = new DeviceClient({ issuer, clientId, store, scope: 'read offline_access' })
  const controller = new AbortController()
  process.once('SIGINT', () => controller.abort())
  try {
    if (!(await client.session())) {
      await client.login({
        signal: controller.signal,
        onPrompt: async (authorization) => {
          console.error(formatInstructions(authorization))
          if (authorization.verificationUriComplete) console.error(await renderTerminalQr(authorization.verificationUriComplete))
        },
        onProgress: ({ secondsLeft }) => process.stderr.write(`\rwaiting… ${formatDuration(secondsLeft)} left `),
      })
    }
    // Refreshes when due (rotation is stored first); sends DPoP proofs with `ath` for bound tokens.
    const res = await client.fetch(apiUrl)
    console.log(res.status, await res.text())
    return 0
  } catch (err) {
    if (err instanceof OAuthResponseError) {
      switch (err.error) {
        case 'access_denied':
          console.error('you said no on the verification page')
          return 1
        case 'expired_token':
          console.error('the code expired; run me again')
          return 1
        default:
          console.error(`the server said ${err.error}: ${err.error_description ?? ''} (HTTP ${err.status})`)
          return 1
      }
    }
    if (err instanceof ClientError) {
      console.error(err.code === 'ERR_LOGIN_REQUIRED' ? 'please log in again' : err.message)
      return 1
    }
    throw err
  }
}

const [issuer, clientId, apiUrl] = process.argv.slice(2)
if (import.meta.url === `file://${process.argv[1]}` && issuer && clientId && apiUrl) process.exitCode = await main(issuer, clientId, apiUrl)
