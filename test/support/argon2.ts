/** argon2id verification that answers false (not throws) for a string that is not a PHC hash. */
import { verify } from '@node-rs/argon2'

export async function argon2Verify(hash: string, secret: string): Promise<boolean> {
  try {
    return await verify(hash, secret)
  } catch {
    return false
  }
}
