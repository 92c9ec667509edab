/**
 * The HTTP request metrics are kept in plain numbers (issue 17) but must scrape exactly as
 * prom-client's own Counter and Histogram would: same series, labels, values and text format.
 */
import { Counter, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { HTTP_LATENCY_BUCKETS } from '../src/governance/metrics.js'
import { RequestStats } from '../src/governance/request-stats.js'

const COUNTER = { name: 'devicegate_http_requests_total', help: 'HTTP requests by route and outcome' }
const HISTOGRAM = { name: 'devicegate_http_request_duration_seconds', help: 'HTTP request latency by route' }

/** Sorted sample lines: series order is not part of the format. */
const lines = (text: string) => text.split('\n').filter(Boolean).sort()

describe('HTTP request metrics in plain numbers', () => {
  it('scrapes like prom-client Counter and Histogram fed the same requests, bucket edges and +Inf included', async () => {
    const ours = new Registry()
    const stats = new RequestStats(ours, COUNTER, { ...HISTOGRAM, buckets: HTTP_LATENCY_BUCKETS })
    const theirs = new Registry()
    const counter = new Counter({ ...COUNTER, labelNames: ['endpoint', 'outcome'], registers: [theirs] })
    const histogram = new Histogram({ ...HISTOGRAM, labelNames: ['endpoint'], buckets: [...HTTP_LATENCY_BUCKETS], registers: [theirs] })
    const requests: [string, string, number][] = [
      ['/token', 'authorization_pending', 0.0004],
      ['/token', 'slow_down', 0.001], // on a bucket's upper bound: counted in that bucket (le)
      ['/token', 'ok', 0.0031],
      ['/token', 'authorization_pending', 0.02],
      ['/introspect', 'ok', 0.7],
      ['/introspect', 'invalid_client', 3.5], // above every bound: only +Inf, _sum and _count
      ['unmatched', 'http_404', 0.0001],
    ]
    for (const [endpoint, outcome, seconds] of requests) {
      stats.record(endpoint, outcome, seconds)
      counter.inc({ endpoint, outcome })
      histogram.observe({ endpoint }, seconds)
    }
    const text = await ours.metrics()
    expect(lines(text)).toEqual(lines(await theirs.metrics()))
    expect(text).toContain('devicegate_http_request_duration_seconds_bucket{le="0.001",endpoint="/token"} 2')
    expect(text).toContain('devicegate_http_requests_total{endpoint="/token",outcome="authorization_pending"} 2')
    // A second scrape does not count twice.
    expect(lines(await ours.metrics())).toEqual(lines(text))
  })

  it('forgets everything on a registry reset, like prom-client metrics', async () => {
    const registry = new Registry()
    const stats = new RequestStats(registry, COUNTER, { ...HISTOGRAM, buckets: HTTP_LATENCY_BUCKETS })
    stats.record('/token', 'ok', 0.002)
    registry.resetMetrics()
    expect(await registry.metrics()).not.toMatch(/endpoint="\/token"/)
  })
})
