/**
 * The dependency rules (README "Development", .dependency-cruiser.cjs) hold for src/, and the
 * check fails when one is broken: a fixture tree breaks each rule once and every break is named.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkArchitecture, type Violation } from '../scripts/check-architecture.mjs'

describe('dependency rules', () => {
  it('hold for src/: no cycle, core without I/O or clock, protocol without http/web, storage behind its interfaces, SDKs without server code', async () => {
    expect(await checkArchitecture()).toEqual([])
  })

  describe('on a tree that breaks each rule once', () => {
    let dir = ''
    let violations: Violation[] = []

    const files: Record<string, string> = {
      'src/core/model.ts': "import { readFileSync } from 'node:fs'\nexport const read = () => readFileSync('x')\n",
      'src/core/clock.ts': '// Date.now() in a comment is fine\nexport const now = () => Date.now()\n',
      'src/http/app.ts': 'export const app = 1\n',
      'src/protocol/token.ts': "import { app } from '../http/app.js'\nexport const t = app\n",
      'src/storage/store.ts': 'export interface Store { kind: string }\n',
      'src/storage/kysely/device-grants.ts': 'export class KyselyDeviceGrantStore {}\n',
      'src/governance/inventory.ts': "import { KyselyDeviceGrantStore } from '../storage/kysely/device-grants.js'\nexport const s = KyselyDeviceGrantStore\n",
      'src/client/session.ts': "import type { Store } from '../storage/store.js'\nexport type S = Store\n",
      'src/resource/verifier.ts': "import { t } from '../protocol/token.js'\nexport const v = t\n",
      'src/web/a.ts': "import { b } from './b.js'\nexport const a = () => b\n",
      'src/web/b.ts': "import { a } from './a.js'\nexport const b = () => a\n",
    }

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'devicegate-deps-'))
      for (const [path, text] of Object.entries(files)) {
        await mkdir(dirname(join(dir, path)), { recursive: true })
        await writeFile(join(dir, path), text)
      }
      violations = await checkArchitecture({ baseDir: dir })
    })
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true })
    })

    it('reports core importing node:fs (core-has-no-io)', () => {
      expect(violations).toContainEqual({ rule: 'core-has-no-io', from: 'src/core/model.ts', to: expect.stringMatching(/^(node:)?fs$/) })
    })
    it('reports core calling Date.now() but not a comment naming it (core-reads-no-clock)', () => {
      expect(violations.filter((v) => v.rule === 'core-reads-no-clock')).toEqual([
        { rule: 'core-reads-no-clock', from: 'src/core/clock.ts', to: '2:26' },
      ])
    })
    it('reports protocol importing http (protocol-not-http-or-web)', () => {
      expect(violations).toContainEqual({ rule: 'protocol-not-http-or-web', from: 'src/protocol/token.ts', to: 'src/http/app.ts' })
    })
    it('reports a Kysely implementation imported outside src/storage (storage-through-interfaces)', () => {
      expect(violations).toContainEqual({
        rule: 'storage-through-interfaces',
        from: 'src/governance/inventory.ts',
        to: 'src/storage/kysely/device-grants.ts',
      })
    })
    it('reports client importing server code, even type-only (client-has-no-server-code)', () => {
      expect(violations).toContainEqual({ rule: 'client-has-no-server-code', from: 'src/client/session.ts', to: 'src/storage/store.ts' })
    })
    it('reports resource importing server code (resource-has-no-server-code)', () => {
      expect(violations).toContainEqual({ rule: 'resource-has-no-server-code', from: 'src/resource/verifier.ts', to: 'src/protocol/token.ts' })
    })
    it('reports a cycle of imports (no-circular)', () => {
      const cycles = violations.filter((v) => v.rule === 'no-circular')
      expect(cycles).toHaveLength(1)
      expect([cycles[0]!.from, cycles[0]!.to].sort()).toEqual(['src/web/a.ts', 'src/web/b.ts'])
    })
  })
})
