/** A column: its header and which side its cells line up on. */
export interface Column {
  header: string;
  align?: 'left' | 'right';
  /** The least width, for tables printed before all their rows are known. */
  width?: number;
}

const GAP = '  ';

function pad(text: string, width: number, align: 'left' | 'right' | undefined): string {
  return align === 'right' ? text.padStart(width) : text.padEnd(width);
}

function line(columns: readonly Column[], widths: readonly number[], cells: readonly string[]): string {
  // The last column is not padded, so lines carry no trailing blanks.
  const last = cells.length - 1;
  return cells
    .map((cell, i) =>
      i === last && columns[i]?.align !== 'right' ? cell : pad(cell, widths[i] ?? 0, columns[i]?.align),
    )
    .join(GAP)
    .trimEnd();
}

/** Lines of a table whose columns are as wide as their widest cell. */
export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string[] {
  const widths = columns.map((c, i) =>
    Math.max(c.header.length, c.width ?? 0, ...rows.map((r) => (r[i] ?? '').length)),
  );
  return [
    line(
      columns,
      widths,
      columns.map((c) => c.header),
    ),
    ...rows.map((r) => line(columns, widths, r)),
  ];
}

/**
 * A table printed as rows arrive (a long log, or a follow that never ends). The first
 * `bufferRows` rows are held to size the columns; after that a wider cell widens its
 * column from then on, so alignment holds for all but the odd outlier.
 */
export class StreamingTable {
  private widths: number[];
  private held: string[][] | undefined = [];

  constructor(
    private readonly columns: readonly Column[],
    private readonly write: (line: string) => void,
    private readonly bufferRows = 200,
  ) {
    this.widths = columns.map((c) => Math.max(c.header.length, c.width ?? 0));
  }

  row(cells: readonly string[]): void {
    this.widths = this.widths.map((w, i) => Math.max(w, (cells[i] ?? '').length));
    if (this.held) {
      this.held.push([...cells]);
      if (this.held.length >= this.bufferRows) this.flush();
      return;
    }
    this.write(line(this.columns, this.widths, cells));
  }

  /** Prints what is held (the header at least); rows after this print at once. */
  flush(): void {
    if (!this.held) return;
    const held = this.held;
    this.held = undefined;
    this.write(
      line(
        this.columns,
        this.widths,
        this.columns.map((c) => c.header),
      ),
    );
    for (const cells of held) this.write(line(this.columns, this.widths, cells));
  }
}
