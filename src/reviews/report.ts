/**
 * The compliance report as a service: gather live evidence, judge the controls,
 * render JSON or a printable HTML page. Used by `devicegate report compliance`, the admin API
 * (`GET /admin/api/reports/compliance`) and the console.
 */
import type { Config } from '../config/load.js'
import { buildComplianceReport, type ComplianceReport, type ControlResult } from './compliance.js'
import { gatherEvidence, type EvidenceDeps } from './evidence.js'

/** Default period: the last 90 days, in seconds. */
export const DEFAULT_REPORT_PERIOD_SECONDS = 90 * 86_400

/** The governance facts the controls read from the configuration. */
export function governanceFacts(config: Config): Parameters<typeof buildComplianceReport>[2] {
  const a = config.governance.anomalies
  const detectors: Record<string, { enabled: boolean; action: string }> = {
    refresh_token_reuse: a.refreshTokenReuse,
    token_used_from_new_ip_range: a.tokenUsedFromNewIpRange,
    dpop_key_mismatch: a.dpopKeyMismatch,
    slow_down_ignored: a.slowDownIgnored,
    user_code_guessing: a.userCodeGuessing,
    device_authorization_burst: a.deviceAuthorizationBurst,
    approval_network_mismatch: a.approvalNetworkMismatch,
    orphaned_token: a.orphanedToken,
    dormant_grant: a.dormantGrant,
    device_flow_same_device: a.deviceFlowSameDevice,
  }
  return {
    auditEnabled: config.governance.audit.enabled,
    metricsEnabled: config.governance.metrics.enabled,
    adminEnabled: config.governance.admin.enabled,
    detectors,
    maxFailedEntries: config.verification.maxFailedEntries,
    sessionTtlSeconds: config.verification.sessionTtlSeconds,
  }
}

/**
 * Builds the report for `[since, until)` (epoch seconds; default: the last 90 days up to now).
 * @throws {RangeError} when `since` is not before `until`.
 */
export async function createComplianceReport(deps: EvidenceDeps, period: { since?: number | undefined; until?: number | undefined } = {}): Promise<ComplianceReport> {
  const until = period.until ?? deps.clock.nowSeconds()
  const since = period.since ?? until - DEFAULT_REPORT_PERIOD_SECONDS
  if (since >= until) throw new RangeError('"since" must be before "until"')
  const evidence = await gatherEvidence(deps, { since, until })
  return buildComplianceReport(evidence, deps.config.reviews.compliance, governanceFacts(deps.config))
}

function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

const iso = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z')

/** CSS of the report page (inline; printable: controls do not break across pages). */
const REPORT_CSS = `body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#111}h1{font-size:1.5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
section{break-inside:avoid;page-break-inside:avoid;border-top:2px solid #333;margin-top:1.2rem}
.verdict{font-weight:bold;text-transform:uppercase;padding:0 .4rem}.pass{color:#0a5c0a}.warn{color:#8a5a00}.fail{color:#a00000}
code{font-size:.9em}@media print{body{margin:0}a{color:inherit}}`

function renderControl(c: ControlResult): string {
  const rows = c.evidence
    .map((e) => `<tr><td>${esc(e.label)}</td><td>${esc(e.value)}</td><td>${esc(e.source)}</td><td>${e.seqs && e.seqs.length > 0 ? esc(e.seqs.join(', ')) : ''}</td></tr>`)
    .join('')
  const findings =
    c.findings.length === 0
      ? ''
      : `<h4>Findings and fixes</h4><ol>${c.findings.map((f, i) => `<li>${esc(f)}<br><strong>Fix:</strong> ${esc(c.fixes[i] ?? '')}</li>`).join('')}</ol>`
  return `<section id="${esc(c.id)}"><h3>${esc(c.id)} — ${esc(c.title)} <span class="verdict ${c.verdict}">${c.verdict}</span></h3>
<p><small>${esc(c.framework)}</small></p><p>${esc(c.implementation)}</p>
<table><thead><tr><th scope="col">Evidence</th><th scope="col">Value</th><th scope="col">Source</th><th scope="col">Audit seq</th></tr></thead><tbody>${rows}</tbody></table>${findings}</section>`
}

/** A self-contained, printable HTML page of the report (no scripts, inline CSS). */
export function renderComplianceHtml(r: ComplianceReport): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(r.title)}</title><style>${REPORT_CSS}</style></head><body>
<h1>${esc(r.title)}</h1>
<p>Issuer <code>${esc(r.issuer)}</code>; period ${esc(iso(r.period.since))} – ${esc(iso(r.period.until))}; generated ${esc(iso(r.generatedAt))}.</p>
<p>Policy <code>${esc(r.policy.id)}</code> (${esc(r.policy.source)}). Audit chain head: seq <strong>${r.chainHead.seq}</strong>, hash <code>${esc(r.chainHead.hash)}</code> — check the cited sequence numbers with <code>devicegate audit verify</code>.</p>
<table><thead><tr><th scope="col">Pass</th><th scope="col">Warn</th><th scope="col">Fail</th></tr></thead><tbody><tr><td class="pass">${r.summary.pass}</td><td class="warn">${r.summary.warn}</td><td class="fail">${r.summary.fail}</td></tr></tbody></table>
<table><thead><tr><th scope="col">Control</th><th scope="col">Framework</th><th scope="col">Verdict</th></tr></thead><tbody>${r.controls
    .map((c) => `<tr><td><a href="#${esc(c.id)}">${esc(c.id)}</a> ${esc(c.title)}</td><td>${esc(c.framework)}</td><td class="verdict ${c.verdict}">${c.verdict}</td></tr>`)
    .join('')}</tbody></table>
${r.controls.map(renderControl).join('\n')}
</body></html>
`
}
