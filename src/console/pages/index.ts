/** Every console page module, in registration order. */
import type { FastifyInstance } from 'fastify'
import type { ConsoleContext } from '../index.js'
import { registerGrantPages } from './grants.js'
import { registerMyDevicesPage } from './my-devices.js'
import { registerOverviewPage } from './overview.js'
import { registerSignInPages } from './sign-in.js'

export const CONSOLE_PAGES: readonly ((app: FastifyInstance, ctx: ConsoleContext) => Promise<void>)[] = [
  registerSignInPages,
  registerOverviewPage,
  registerGrantPages,
  registerMyDevicesPage,
]
