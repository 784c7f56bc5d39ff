/**
 * The longest status message a call ends with, in UTF-16 code units. Many refusals quote
 * the value they refuse, and a request can carry megabytes in one field. grpc-js sends
 * the message percent-encoded in the `grpc-message` trailer: 64 KiB of newlines became
 * 192 KiB of header, and the HTTP/2 session that carried it stopped answering every call
 * on it (test/e2e/fuzz-requests.e2e.test.ts found it). Percent-encoding grows a character
 * at most ninefold, so this keeps the trailer under 10 KiB.
 */
export const MAX_STATUS_DETAILS_CHARS = 1024;

/** `details` cut to MAX_STATUS_DETAILS_CHARS (never inside a surrogate pair), saying how much was cut. */
export function boundedDetails(details: string): string {
  if (details.length <= MAX_STATUS_DETAILS_CHARS) return details;
  let end = MAX_STATUS_DETAILS_CHARS;
  const last = details.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${details.slice(0, end)}… (${details.length - end} more characters)`;
}
