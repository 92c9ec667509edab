/**
 * The `devicegate` command.
 */
import { Command } from 'commander'
import { registerDevicesCommands } from './devices.js'
import { registerKeysCommands } from './keys.js'
import { registerLoginCommands } from './login.js'
import { registerServeCommand } from './serve.js'
import { registerUtilityCommands } from './utility.js'

const program = new Command()
  .name('devicegate')
  .description('OAuth 2.0 Device Authorization Grant (RFC 8628) server built for identity governance')
  .showHelpAfterError()
registerServeCommand(program)
registerKeysCommands(program)
registerDevicesCommands(program)
registerUtilityCommands(program)
registerLoginCommands(program)

await program.parseAsync(process.argv)
