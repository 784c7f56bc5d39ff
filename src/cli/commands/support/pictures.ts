import { writeFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../../../domain/errors.js';
import type { LedgerEvent } from '../../../domain/events.js';
import { renderHtml } from './html.js';
import { picture } from './lanes.js';
import { print } from './output.js';
import { renderSvg } from './svg.js';

export type PictureFormat = 'html' | 'svg';

export function pictureFormat(value: string, flag = '--format'): PictureFormat | 'text' {
  if (value === 'text' || value === 'html' || value === 'svg') return value;
  throw new InvalidArgumentError(flag, `"${value}" is not text, html or svg`);
}

/** Renders `events` as HTML or SVG to `output` (a file), or to stdout. */
export async function writePicture(
  events: readonly LedgerEvent[],
  o: { title: string; subtitle: string; format: PictureFormat; output?: string | undefined },
): Promise<void> {
  const p = picture(o.title, events);
  const text = o.format === 'svg' ? renderSvg(p) : renderHtml(p, o.subtitle);
  if (o.output) await writeFile(o.output, text);
  else print(text);
}
