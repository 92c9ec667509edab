/**
 * Country and ASN from the CSV files of the `@ip-location-db/*` npm packages
 * (`asn-country-ipv4.csv`: start,end,country_code; `asn-ipv4.csv`: start,end,as_number,as_org),
 * tested on small generated files in that format; and the documented command
 * `devicegate geo <ip…>` with `geo.country_csv` / `geo.asn_csv` in the configuration.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCsvGeoLookup, openGeoLookup, splitCsvLine } from '../src/policy/geo-csv.js'
import { ensureBuilt, runCli } from './support/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'devicegate-geo-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}
const country4 = file('asn-country-ipv4.csv', '1.0.0.0,1.0.0.255,AU\n8.8.8.0,8.8.8.255,US\n198.51.100.0,198.51.100.255,NL\nnot,a,row\n')
const country6 = file('asn-country-ipv6.csv', '2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n')
const asn4 = file('asn-ipv4.csv', '8.8.8.0,8.8.8.255,15169,Google LLC\n198.51.100.0,198.51.100.127,64500,"Example, Net ""B.V."""\n')
const asn6 = file('asn-ipv6.csv', '2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project\n')

describe('ip-location-db CSV geo data', () => {
  it('finds country and ASN of IPv4 and IPv6 addresses by inclusive range, and nothing outside', async () => {
    const geo = await createCsvGeoLookup({ countryCsv: [country4, country6], asnCsv: [asn4, asn6] })
    expect(geo.stats).toEqual({ countryRanges: 4, asnRanges: 3, skipped: 1 })
    expect(geo.lookup('8.8.8.8')).toEqual({ country: 'US', asn: 15169, asOrg: 'Google LLC' })
    expect(geo.lookup('198.51.100.127')).toEqual({ country: 'NL', asn: 64500, asOrg: 'Example, Net "B.V."' })
    expect(geo.lookup('198.51.100.128')).toEqual({ country: 'NL', asn: null, asOrg: null })
    expect(geo.lookup('1.0.0.0')).toMatchObject({ country: 'AU' })
    expect(geo.lookup('1.0.1.0')).toEqual({ country: null, asn: null, asOrg: null })
    expect(geo.lookup('2001:200::1')).toEqual({ country: 'JP', asn: 2500, asOrg: 'WIDE Project' })
    expect(geo.lookup('::ffff:8.8.8.8')).toMatchObject({ country: 'US' })
    expect(geo.lookup('not an ip')).toEqual({ country: null, asn: null, asOrg: null })
  })

  it('lets configured networks win over the CSV data', async () => {
    const geo = await openGeoLookup({ countryCsv: [country4], asnCsv: [asn4], networks: [{ cidr: '8.8.8.0/24', country: 'DE', asn: 1 }] })
    expect(geo.lookup('8.8.8.8')).toEqual({ country: 'DE', asn: 1, asOrg: null })
    expect(geo.lookup('198.51.100.1')).toMatchObject({ country: 'NL', asn: 64500 })
  })

  it('splits quoted CSV fields (RFC 4180)', () => {
    expect(splitCsvLine('a,"b,c","d ""e"""')).toEqual(['a', 'b,c', 'd "e"'])
  })
})

describe('devicegate geo', () => {
  beforeAll(() => ensureBuilt(), 120_000)
  it('looks addresses up in the configured CSV files', () => {
    const config = file('devicegate.yaml', `data_dir: ${JSON.stringify(join(dir, 'data'))}\nlog_level: silent\ngeo:\n  country_csv: [${JSON.stringify(country4)}]\n  asn_csv: [${JSON.stringify(asn4)}]\n`)
    const res = runCli(['geo', '8.8.8.8', '192.0.2.1', '--config', config])
    expect(res.stderr).toBe('')
    expect(res.stdout).toBe('8.8.8.8  country US  asn AS15169 (Google LLC)\n192.0.2.1  country unknown  asn unknown\n')
  })
})
