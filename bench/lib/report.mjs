// Plain-text report of a bench run.

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (!v.length) return null
  const mid = v.length >> 1
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** Per-part medians of `{ part: number }` objects (a part missing from a round is left out there). */
export function medianParts(list) {
  const names = [...new Set(list.flatMap((o) => Object.keys(o)))]
  return Object.fromEntries(names.map((n) => [n, median(list.map((o) => o[n]))]))
}

const fmtInt = (x) => (x == null ? '-' : Math.round(x).toLocaleString('en-US'))
const fmtMs = (x) => (x == null ? '-' : x < 10 ? x.toFixed(2) : x.toFixed(1))
const fmtRatio = (x) => (x == null ? '-' : `${x.toFixed(2)}×`)
const fmtMB = (b) => (b == null ? '-' : `${(b / 1048576).toFixed(1)} MB`)

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ')
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function printReport(r) {
  const out = []
  out.push('')
  out.push(`devicegate bench — ${r.startedAt}, ${r.machine.cpus} CPUs (${r.machine.model}), Node ${r.machine.node}`)
  out.push(`${r.config.rounds} round(s) × ${r.config.durationSeconds} s, ${r.config.connections} connections, ${r.config.warmupSeconds} s warm-up; medians over rounds`)
  out.push('Targets:')
  for (const [n, d] of Object.entries(r.targets)) out.push(`  ${n.padEnd(14)} ${d}`)
  out.push('')

  const rows = []
  for (const s of Object.values(r.scenarios)) {
    for (const [name, v] of Object.entries(s)) {
      if (name === 'title' || name === 'ratios') continue
      const cls = Object.entries(v.counts).map(([k, n]) => `${k}=${fmtInt(n)}`).join(' ')
      const errs = Object.entries(v.errors).map(([k, n]) => `${k}=${fmtInt(n)}`).join(' ')
      rows.push([s.title, name, fmtInt(v.rps), fmtMs(v.mean), fmtMs(v.p50), fmtMs(v.p99), fmtInt(v.errorCount), [cls, errs && `errors: ${errs}`].filter(Boolean).join('; ')])
    }
  }
  if (rows.length) {
    out.push(table(['scenario', 'target', 'req/s', 'mean ms', 'p50 ms', 'p99 ms', 'errors', 'responses'], rows))
    out.push('')
    const ratioRows = Object.values(r.scenarios).map((s) => [
      s.title,
      fmtRatio(s.ratios.devicegate_over_peer),
      fmtRatio(s.ratios.devicegate_over_limit),
      fmtRatio(s.ratios.peer_over_limit),
      fmtRatio(s.ratios.devicegate_p99_over_peer_p99),
      fmtRatio(s.ratios.peer_cpu_over_devicegate_cpu),
    ])
    out.push(table(['scenario', 'devicegate/peer', 'devicegate/limit', 'peer/limit', 'dg p99/peer p99', 'peer CPU/dg CPU'], ratioRows))
    out.push('(req/s ratios; "peer CPU/dg CPU" is the req/s ratio where CPU is the bound, from CPU per request, less sensitive to other load)')
    out.push('')
    const cpuTargets = [...new Set(Object.values(r.scenarios).flatMap((s) => Object.keys(s).filter((n) => n !== 'title' && n !== 'ratios' && s[n]?.serverCpuMsPerRequest != null)))]
    if (cpuTargets.length) {
      out.push('CPU µs per request of each target\'s serving process(es), medians (/proc/<pid>/stat over the measured window):')
      out.push(table(['scenario', ...cpuTargets], Object.values(r.scenarios).map((s) => [s.title, ...cpuTargets.map((n) => (s[n]?.serverCpuMsPerRequest == null ? '-' : fmtInt(s[n].serverCpuMsPerRequest * 1000)))])))
      out.push('')
    }
    const pgNames = [...new Set(Object.values(r.scenarios).flatMap((s) => Object.keys(s.ratios.over_sqlite ?? {})))]
    if (pgNames.length) {
      out.push('PostgreSQL targets / one SQLite instance (devicegate), req/s, this run:')
      out.push(table(['scenario', ...pgNames], Object.values(r.scenarios).map((s) => [s.title, ...pgNames.map((n) => fmtRatio(s.ratios.over_sqlite?.[n]))])))
      out.push('')
      const cpuNames = ['devicegate', ...pgNames]
      out.push('CPU ms per request (devicegate processes + their PostgreSQL backends + Redis server), medians:')
      out.push(table(['scenario', ...cpuNames], Object.values(r.scenarios).map((s) => [s.title, ...cpuNames.map((n) => (s[n]?.serverCpuMsPerRequest == null ? '-' : s[n].serverCpuMsPerRequest.toFixed(3)))])))
      out.push('')
      const partNames = ['devicegate', 'postgres', 'external', 'proxy']
      const partRows = Object.values(r.scenarios).flatMap((s) =>
        pgNames.filter((n) => s[n]?.cpuParts).map((n) => [s.title, n, ...partNames.map((p) => (s[n].cpuParts[p] == null ? '-' : fmtInt(s[n].cpuParts[p] * 1000)))]),
      )
      if (partRows.length) {
        out.push('where it goes, CPU µs per request: devicegate instances, their PostgreSQL backends, Redis (external), and the -x2 set-up proxy (not in the totals; the measured load bypasses it):')
        out.push(table(['scenario', 'target', ...partNames], partRows))
        out.push('')
      }
      out.push('the same as a ratio, SQLite CPU per request / target CPU per request (the req/s ratio where CPU is the bound):')
      out.push(table(['scenario', ...pgNames], Object.values(r.scenarios).map((s) => [s.title, ...pgNames.map((n) => fmtRatio(s.ratios.cpu_over_sqlite?.[n]))])))
      out.push('')
    }
  }

  const { e, f, g } = r.extra
  if (e) {
    out.push(`(e) memory: RSS idle and after ${fmtInt(e.deviceCodes)} pending device codes`)
    out.push(table(['target', 'RSS idle', 'RSS after', 'RSS per 1,000 codes', 'data files after', 'created', 'create req/s'], Object.entries(e.targets).map(([n, v]) => [n, fmtMB(v.idleRss), fmtMB(v.afterRss), fmtMB(v.perThousand), v.dbBytes == null ? 'n/a (in memory)' : fmtMB(v.dbBytes), fmtInt(v.created), fmtInt(v.createRps)])))
    out.push('')
  }
  if (f) {
    out.push(`(f) growth, devicegate: ${f.description}`)
    out.push(table(['live tokens', 'scenario', 'req/s', 'mean ms', 'p50 ms', 'p99 ms', 'errors', 'seeded in'], f.rows.map((x) => [fmtInt(x.liveTokens), x.title, fmtInt(x.rps), fmtMs(x.mean), fmtMs(x.p50), fmtMs(x.p99), fmtInt(x.errorCount), `${x.seedSeconds.toFixed(1)} s`])))
    for (const [k, v] of Object.entries(f.ratios)) out.push(`  ${k}: mean latency ${fmtRatio(v.mean)}, p50 ${fmtRatio(v.p50)}, p99 ${fmtRatio(v.p99)} (whole ms), req/s ${fmtRatio(v.rps)} (largest / smallest)`)
    out.push('')
  }
  if (g) {
    out.push(`(g) revoke all grants of one user: ${fmtInt(g.grants)} grants in ${g.seconds.toFixed(3)} s via ${g.method}`)
    out.push('')
  }
  for (const w of r.warnings) out.push(`WARNING: ${w}`)
  for (const n of r.notes) out.push(`note: ${n}`)
  console.log(out.join('\n'))
}
