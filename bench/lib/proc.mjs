// Process plumbing: free ports, starting and stopping targets, CPU and RSS sampling from /proc.
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { openSync, closeSync, readFileSync, readdirSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

/** Asks the kernel for a free TCP port on host. */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, host, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * Starts a target as a child process, its stdout/stderr going to logFile (so logging costs the
 * target what it costs in production, not the driver), and waits until readyUrl answers 2xx.
 */
export async function startProcess({ cmd, args, env, cwd, logFile, readyUrl, timeoutMs = 60_000 }) {
  const fd = openSync(logFile, 'a')
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  let exited = null
  child.once('exit', (code, signal) => (exited = { code, signal }))
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (exited) {
      const tail = readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n')
      throw new Error(`${cmd} ${args.join(' ')} exited (${JSON.stringify(exited)}) before it was ready:\n${tail}`)
    }
    try {
      const res = await fetch(readyUrl, { signal: AbortSignal.timeout(2000) })
      await res.arrayBuffer()
      if (res.ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`${cmd} ${args.join(' ')} not ready after ${timeoutMs} ms (see ${logFile})`)
    }
    await sleep(100)
  }
  return child
}

/** SIGTERM, then SIGKILL after graceMs. Resolves when the child has exited. */
export async function stopProcess(child, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await done
  clearTimeout(timer)
}

/** VmRSS of a process in bytes (from /proc/<pid>/status), or null. */
export function readRssBytes(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : null
  } catch {
    return null
  }
}

export const CLK_TCK = 100 // USER_HZ on Linux

/** utime+stime (+ waited-for children) of one process in clock ticks. */
export function processTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is state (field 3); utime is field 14, stime 15, cutime 16, cstime 17.
    return Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
  } catch {
    return 0
  }
}

/** pids of pid and all its descendants. */
function processTree(rootPids) {
  const parentOf = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      parentOf.set(Number(name), ppid)
    } catch {
      // exited meanwhile
    }
  }
  const tree = new Set(rootPids)
  let grew = true
  while (grew) {
    grew = false
    for (const [pid, ppid] of parentOf) {
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid)
        grew = true
      }
    }
  }
  return [...tree]
}

/** Machine-wide busy and total ticks from /proc/stat. */
function machineTicks() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = v[3] + (v[4] ?? 0) // idle + iowait
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0) // exclude guest (already in user)
  return { busy: total - idle, total }
}

/**
 * Starts a CPU accounting window. `stop()` returns how busy the machine was, and how much of
 * that is not attributable to the driver (this process) or to the target's process tree.
 */
export function startCpuWindow(targetPid) {
  const pids = () => processTree([process.pid, ...(targetPid ? [targetPid] : [])])
  const before = { m: machineTicks(), own: new Map(pids().map((p) => [p, processTicks(p)])), t: Date.now() }
  return {
    stop() {
      const m = machineTicks()
      let ownTicks = 0
      for (const p of pids()) ownTicks += processTicks(p) - (before.own.get(p) ?? 0)
      const seconds = (Date.now() - before.t) / 1000
      const busyTicks = m.busy - before.m.busy
      const otherTicks = Math.max(0, busyTicks - ownTicks)
      return {
        seconds,
        machineBusyCores: busyTicks / CLK_TCK / seconds,
        benchCores: ownTicks / CLK_TCK / seconds,
        otherCores: otherTicks / CLK_TCK / seconds,
      }
    },
  }
}

/**
 * CPU used by a target's serving processes over a window: `serverPids()` (the server processes,
 * and, for PostgreSQL targets, their database backends) and `externalCpuSeconds()` (e.g. the
 * Redis server's own counter). Less sensitive to other load than req/s: a busy machine slows
 * a request, it does not make it cost more CPU (caches aside).
 *
 * A target with `cpuParts()` (`{ part: pids }`, e.g. devicegate / postgres / proxy) also gets its
 * CPU per request split by part (`parts` after `stop`; `external` is `externalCpuSeconds`). A
 * part that is not among `serverPids()` (the proxy) is reported but not in the total.
 * @returns `stop(requests)` → CPU milliseconds per request; then `parts` → `{ part: ms per request }`.
 */
export async function startServerCpuWindow(inst) {
  const pidsOf = async () => (inst.serverPids ? await inst.serverPids() : [inst.pid])
  const partsOf = async () => (inst.cpuParts ? await inst.cpuParts() : {})
  const servingBefore = await pidsOf()
  const partsBefore = await partsOf()
  const before = new Map([...servingBefore, ...Object.values(partsBefore).flat()].map((p) => [p, processTicks(p)]))
  const externalBefore = inst.externalCpuSeconds ? await inst.externalCpuSeconds() : 0
  const used = (p) => Math.max(0, processTicks(p) - (before.get(p) ?? 0))
  const window = {
    /** After `stop`, for a target with `cpuParts`: CPU milliseconds per request by part. */
    parts: undefined,
    async stop(requests) {
      const serving = new Set([...servingBefore, ...(await pidsOf())])
      let ticks = 0
      for (const p of serving) ticks += used(p)
      const external = inst.externalCpuSeconds ? (await inst.externalCpuSeconds()) - externalBefore : 0
      if (requests <= 0) return null
      const perRequest = (seconds) => (seconds * 1000) / requests
      if (inst.cpuParts) {
        const partsNow = await partsOf()
        window.parts = {}
        for (const name of new Set([...Object.keys(partsBefore), ...Object.keys(partsNow)])) {
          const pids = new Set([...(partsBefore[name] ?? []), ...(partsNow[name] ?? [])])
          window.parts[name] = perRequest([...pids].reduce((sum, p) => sum + used(p), 0) / CLK_TCK)
        }
        if (inst.externalCpuSeconds) window.parts.external = perRequest(external)
      }
      return perRequest(ticks / CLK_TCK + external)
    },
  }
  return window
}

export function loadAverage() {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0])
  } catch {
    return null
  }
}
