/**
 * The `devicegate` command.
 */
import { Command } from 'commander'
import { SDK_VERSION } from '../client/version.js'
import { registerGovernanceCommands } from './governance.js'
import { registerDevicesCommands } from './devices.js'
import { registerKeysCommands } from './keys.js'
import { registerLoginCommands } from './login.js'
import { registerPolicyCommands } from './policy.js'
import { registerReviewsCommands } from './reviews.js'
import { registerPeopleCommands } from './people.js'
import { registerServeCommand } from './serve.js'
import { registerUtilityCommands } from './utility.js'

const program = new Command()
  .name('devicegate')
  .description('OAuth 2.0 Device Authorization Grant (RFC 8628) server built for identity governance')
  .version(SDK_VERSION, '-V, --version', 'print the devicegate version')
  .showHelpAfterError()
registerServeCommand(program)
registerKeysCommands(program)
registerDevicesCommands(program)
registerUtilityCommands(program)
registerGovernanceCommands(program)
registerLoginCommands(program)
registerPolicyCommands(program)
registerReviewsCommands(program)
registerPeopleCommands(program)

await program.parseAsync(process.argv)
