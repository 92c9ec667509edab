/**
 * Example: a CLI that logs in with the device flow and calls an API with the bound token.
 *
 *   npm run build:examples
 *   node build/examples/client-login.js ISSUER CLIENT_ID API_URL [RESOURCE]
 *
 * e.g. against `npm start` (`serve --dev`) and `examples/resource-api.ts` on port 9090:
 *
 *   node build/examples/client-login.js http://127.0.0.1:8080 demo-cli http://127.0.0.1:9090/me
 *
 * The token is requested for the API's resource indicator (RFC 8707; default: the API URL's
 * origin with `/`), so the API accepts it as its audience. Exits 0 when the API answered 2xx,
 * 1 otherwise (a refused token, a denied login). Type-checked with the project and run against a
 * real server in `npm test` (test/examples.test.ts), so it cannot rot.
 */
import { pathToFileURL } from 'node:url';
import { ClientError, DeviceClient, OAuthResponseError, formatDuration, formatInstructions, openTokenStore, renderTerminalQr, } from '../src/client/index.js'; // in your project: from 'devicegate/client'
export async function main(issuer, clientId, apiUrl, resource = `${new URL(apiUrl).origin}/`) {
    // OS keyring when there is one; otherwise AES-256-GCM files (0600) under ~/.config/devicegate.
    const { store, fallbackReason } = await openTokenStore();
    if (fallbackReason)
        console.error(`note: ${fallbackReason}`);
    const client = new DeviceClient({ issuer, clientId, store, scope: 'read offline_access' });
    const controller = new AbortController();
    process.once('SIGINT', () => controller.abort());
    try {
        if (!(await client.session())) {
            await client.login({
                signal: controller.signal,
                extraParams: { resource },
                onPrompt: async (authorization) => {
                    console.error(formatInstructions(authorization));
                    if (authorization.verificationUriComplete)
                        console.error(await renderTerminalQr(authorization.verificationUriComplete));
                },
                onProgress: ({ secondsLeft }) => process.stderr.write(`\rwaiting… ${formatDuration(secondsLeft)} left `),
            });
        }
        // Refreshes when due (rotation is stored first); sends DPoP proofs with `ath` for bound tokens.
        const res = await client.fetch(apiUrl);
        console.log(res.status, await res.text());
        if (res.ok)
            return 0;
        // e.g. 401 with WWW-Authenticate: the token was revoked, or is not for this API.
        console.error(`the API refused the request: HTTP ${res.status} ${res.headers.get('www-authenticate') ?? ''}`);
        return 1;
    }
    catch (err) {
        if (err instanceof OAuthResponseError) {
            switch (err.error) {
                case 'access_denied':
                    console.error('you said no on the verification page');
                    return 1;
                case 'expired_token':
                    console.error('the code expired; run me again');
                    return 1;
                default:
                    console.error(`the server said ${err.error}: ${err.error_description ?? ''} (HTTP ${err.status})`);
                    return 1;
            }
        }
        if (err instanceof ClientError) {
            console.error(err.code === 'ERR_LOGIN_REQUIRED' ? 'please log in again' : err.message);
            return 1;
        }
        throw err;
    }
}
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
    const [issuer, clientId, apiUrl, resource] = process.argv.slice(2);
    if (!issuer || !clientId || !apiUrl) {
        console.error('usage: client-login.js ISSUER CLIENT_ID API_URL [RESOURCE]');
        process.exitCode = 2;
    }
    else {
        process.exitCode = await main(issuer, clientId, apiUrl, resource);
    }
}
