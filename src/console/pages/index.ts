/** Every console page module, in registration order. */
import type { ConsolePage } from '../index.js'
import { registerAnomalyPages } from './anomalies.js'
import { registerAuditPages } from './audit.js'
import { registerGrantPages } from './grants.js'
import { registerMyDevicesPage } from './my-devices.js'
import { registerOverviewPage } from './overview.js'
import { registerPeoplePages } from './people.js'
import { registerPolicyPage } from './policy.js'
import { registerRevokePage } from './revoke.js'
import { registerSignInPages } from './sign-in.js'

export const CONSOLE_PAGES: readonly ConsolePage[] = [
  registerSignInPages,
  registerOverviewPage,
  registerGrantPages,
  registerAnomalyPages,
  registerRevokePage,
  registerPolicyPage,
  registerAuditPages,
  registerPeoplePages,
  registerMyDevicesPage,
]
