/**
 * Showing the user code to a person (RFC 8628 §3.3): text and a terminal QR code.
 */
import QRCode from 'qrcode';
/**
 * Renders `text` as a QR code in terminal characters (two modules per character cell), suitable
 * for `verification_uri_complete` (RFC 8628 §3.3.1). The code is error-correction level L to
 * keep it small.
 */
export async function renderTerminalQr(text) {
    return QRCode.toString(text, { type: 'terminal', small: true, errorCorrectionLevel: 'L' });
}
/**
 * The instructions to show: where to go and which code to enter. The code is shown as the server
 * sent it; RFC 8628 §6.1 servers format it for reading (`XXXX-XXXX`).
 */
export function formatInstructions(authorization) {
    const lines = [`To sign in, open ${authorization.verificationUri}`, `and enter the code:  ${authorization.userCode}`];
    if (authorization.verificationUriComplete)
        lines.push('', `Or open ${authorization.verificationUriComplete}`);
    return lines.join('\n');
}
/** Formats seconds as `m:ss` (or `h:mm:ss`), for "time left" displays. */
export function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
