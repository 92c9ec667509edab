// Builds dist/ when it is missing or older than any file in src/ (used by `npm start`).
import { execSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

function newest(dir) {
  let max = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    max = Math.max(max, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs)
  }
  return max
}
const marker = 'dist/cli/main.js'
if (!existsSync(marker) || statSync(marker).mtimeMs < newest('src')) {
  console.error('building devicegate…')
  execSync('npm run build', { stdio: 'inherit' })
}
