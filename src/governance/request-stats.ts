/**
 * Per-request HTTP metrics kept in plain numbers and handed to prom-client only at scrape time.
 *
 * prom-client's labelled `inc()` and `observe()` rebuild and hash a label object and validate it on
 * every call (~0.8 µs per request for one counter and one histogram, issue 17); here a request is
 * one map lookup by route, one by outcome, a bucket search and three additions. The exposition is
 * prom-client's own: the counter is refilled from these numbers in its `collect()`, the histogram
 * is a metric object whose values have exactly the shape prom-client's `Histogram` gives the
 * registry (checked against it by test/metrics.test.ts).
 */
import { Counter, type Registry } from 'prom-client'

/** Counts and latencies of one route (`endpoint` label). */
interface RouteStats {
  /** Requests by outcome label. */
  readonly outcomes: Map<string, number>
  /** Requests per latency bucket (not cumulative), by index of the upper bound; last: above every bound (`+Inf`). */
  readonly buckets: number[]
  /** Sum of the latencies, in seconds. */
  sum: number
  /** Requests measured. */
  count: number
}

/** A sample as prom-client's registry reads it from a metric's `get()`. */
interface Sample {
  labels: Record<string, string | number>
  value: number
  metricName: string
}

/**
 * `requests_total{endpoint,outcome}` and the latency histogram `{endpoint}` of the HTTP layer,
 * registered on `registry`.
 */
export class RequestStats {
  readonly #routes = new Map<string, RouteStats>()
  readonly #bounds: readonly number[]

  /**
   * @param counter name and help of the requests counter.
   * @param histogram name, help and bucket upper bounds (seconds, ascending) of the latency histogram.
   */
  constructor(
    registry: Registry,
    counter: { name: string; help: string },
    histogram: { name: string; help: string; buckets: readonly number[] },
  ) {
    this.#bounds = histogram.buckets
    const routes = this.#routes
    new Counter({
      ...counter,
      labelNames: ['endpoint', 'outcome'],
      registers: [registry],
      collect() {
        this.reset()
        for (const [endpoint, route] of routes) for (const [outcome, n] of route.outcomes) this.inc({ endpoint, outcome }, n)
      },
    })
    const { name, help } = histogram
    const bounds = this.#bounds
    const latency = {
      name,
      help,
      type: 'histogram',
      aggregator: 'sum',
      async get() {
        const values: Sample[] = []
        for (const [endpoint, route] of routes) {
          let cumulative = 0
          for (let i = 0; i < bounds.length; i++) {
            cumulative += route.buckets[i]!
            values.push({ labels: { le: bounds[i]!, endpoint }, value: cumulative, metricName: `${name}_bucket` })
          }
          values.push(
            { labels: { le: '+Inf', endpoint }, value: route.count, metricName: `${name}_bucket` },
            { labels: { endpoint }, value: route.sum, metricName: `${name}_sum` },
            { labels: { endpoint }, value: route.count, metricName: `${name}_count` },
          )
        }
        return { name, help, type: 'histogram', aggregator: 'sum', values }
      },
      reset: () => routes.clear(),
    }
    registry.registerMetric(latency as unknown as Parameters<Registry['registerMetric']>[0])
  }

  /**
   * Counts one request.
   * @param endpoint route pattern, or `unmatched`.
   * @param outcome OAuth error code, `ok` or `http_<status>`.
   * @param seconds its latency.
   */
  record(endpoint: string, outcome: string, seconds: number): void {
    let route = this.#routes.get(endpoint)
    if (route === undefined) this.#routes.set(endpoint, (route = { outcomes: new Map(), buckets: new Array<number>(this.#bounds.length + 1).fill(0), sum: 0, count: 0 }))
    route.outcomes.set(outcome, (route.outcomes.get(outcome) ?? 0) + 1)
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && seconds > bounds[i]!) i++
    route.buckets[i]!++
    route.sum += seconds
    route.count++
  }
}
