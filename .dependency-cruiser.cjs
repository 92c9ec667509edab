/**
 * devicegate's dependency rules (README "Development"): the arrows point inward,
 * `http/web → protocol → core`, storage is reached through its interfaces, and the SDKs carry no
 * server code. Checked in `npm test` by test/dependency-rules.test.ts (scripts/check-architecture.mjs),
 * which also checks that core never reads the clock (`Date.now()`), something imports cannot show.
 *
 * Paths are relative to the repository root. Type-only imports count (tsPreCompilationDeps).
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No circle of imports: every module can be read (and tested) after the ones it uses.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-has-no-io',
      severity: 'error',
      comment:
        'core/ is the pure domain: it imports only core/ (no fastify, kysely, pg, better-sqlite3, node:fs, node:crypto…); ' +
        'the clock and randomness come in through core/ports.ts.',
      from: { path: '^src/core/' },
      to: { pathNot: '^src/core/' },
    },
    {
      name: 'protocol-not-http-or-web',
      severity: 'error',
      comment: 'protocol/ handlers are framework-free: http/ and web/ call them, never the other way round.',
      from: { path: '^src/protocol/' },
      to: { path: '^src/(http|web)/' },
    },
    {
      name: 'storage-through-interfaces',
      severity: 'error',
      comment:
        'Outside src/storage/, storage is reached through the domain interfaces (src/storage/store.ts and ' +
        'src/storage/<domain>.ts) and openStore (src/storage/index.ts), never through an implementation.',
      from: { path: '^src/', pathNot: '^src/storage/' },
      to: {
        path: '^src/storage/(kysely/|kysely-store\\.ts$|sqlite\\.ts$|sqlite-checkpointer\\.ts$|postgres\\.ts$|poll-times\\.ts$|migrations\\.ts$|migrations/)',
      },
    },
    {
      name: 'client-has-no-server-code',
      severity: 'error',
      comment: 'The CLI SDK (client/) runs in other programs: it imports only itself and the OAuth error model.',
      from: { path: '^src/client/' },
      to: { path: '^src/', pathNot: '^src/(client/|protocol/errors\\.ts$)' },
    },
    {
      name: 'resource-has-no-server-code',
      severity: 'error',
      comment: 'The resource-server helper (resource/) runs in API servers: it imports only itself.',
      from: { path: '^src/resource/' },
      to: { path: '^src/', pathNot: '^src/resource/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
}
