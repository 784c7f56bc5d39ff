/*
 * The zlib dictionary SPDY/3 header blocks are compressed with (draft-mbelshe-httpbis-spdy-00,
 * "Compression"): 65 words, each after its length as 4 bytes big-endian, then a run of
 * status lines, dates and media types without lengths. Both sides must use exactly these
 * 1,423 bytes: zlib names the dictionary by its Adler-32 in the stream header.
 */

// Words are separated by spaces here, except "200 OK", which is one word.
const WORDS = [
  ...'options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges'.split(
    ' ',
  ),
  ...'age allow authorization cache-control connection content-base content-encoding content-language'.split(' '),
  ...'content-length content-location content-md5 content-range content-type date etag expect expires from'.split(' '),
  ...'host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location'.split(' '),
  ...'max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te'.split(' '),
  ...'trailer transfer-encoding upgrade user-agent vary via warning www-authenticate method get status'.split(' '),
  '200 OK',
  ...'version HTTP/1.1 url public set-cookie keep-alive origin'.split(' '),
];

const TAIL = [
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505',
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized',
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable',
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT',
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,',
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.',
].join('');

function build(): Buffer {
  const parts: Buffer[] = [];
  for (const word of WORDS) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(word.length, 0);
    parts.push(length, Buffer.from(word, 'latin1'));
  }
  parts.push(Buffer.from(TAIL, 'latin1'));
  return Buffer.concat(parts);
}

export const SPDY3_HEADER_DICTIONARY: Buffer = build();

/** zlib's checksum (RFC 1950), for the dictionary id in the stream header this side writes. */
export function adler32(data: Buffer): number {
  let a = 1;
  let b = 0;
  for (let i = 0; i < data.length; i++) {
    a = (a + data[i]!) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}
