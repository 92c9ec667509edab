#!/usr/bin/env node
// Entry point of the `devicegate` command; the code lives in dist/ (built by `npm run build`).
import { existsSync } from 'node:fs'

const main = new URL('../dist/cli/main.js', import.meta.url)
if (!existsSync(main)) {
  process.stderr.write('devicegate: not built yet; run `npm run build` (or `npm start`) first\n')
  process.exit(1)
}
await import(main.href)
