/**
 * What a person sees after a program wrote `output` to a terminal `columns` wide: the
 * screen's rows as text. Knows the control sequences progress bars and readline use
 * (cursor moves, line and screen clears, save/restore); colours are dropped.
 */
export function renderScreen(output: string, columns = 100): string[] {
  const rows: string[][] = [[]];
  let row = 0;
  let col = 0;
  let saved = { row: 0, col: 0 };
  const line = () => (rows[row] ??= []);
  const clamp = () => {
    row = Math.max(0, row);
    col = Math.max(0, Math.min(col, columns - 1));
  };
  for (let i = 0; i < output.length; i++) {
    const ch = output[i]!;
    if (ch === '\x1b') {
      if (output[i + 1] === '7') (saved = { row, col }), (i += 1);
      else if (output[i + 1] === '8') ({ row, col } = saved), (i += 1);
      else if (output[i + 1] === '[') {
        const m = /^\[([?0-9;]*)([A-Za-z])/.exec(output.slice(i + 1, i + 20));
        if (!m) continue;
        i += m[0].length;
        const [, arg, cmd] = m;
        const n = arg && !arg.startsWith('?') ? Number(arg.split(';')[0]) : undefined;
        if (cmd === 'A') row -= n || 1;
        else if (cmd === 'B') row += n || 1;
        else if (cmd === 'C') col += n || 1;
        else if (cmd === 'D') col -= n || 1;
        else if (cmd === 'G') col = (n || 1) - 1;
        else if (cmd === 'K') {
          const l = line();
          if (!n) l.length = Math.min(l.length, col);
          else if (n === 1) for (let c = 0; c <= col; c++) l[c] = ' ';
          else l.length = 0;
        } else if (cmd === 'J' && !n) {
          line().length = Math.min(line().length, col);
          rows.length = row + 1;
        }
        clamp();
      }
      continue;
    }
    if (ch === '\r') col = 0;
    else if (ch === '\n') (row += 1), (col = 0); // a terminal's output translation makes \n a new line
    else {
      if (col >= columns) (row += 1), (col = 0);
      const l = line();
      while (l.length < col) l.push(' ');
      l[col] = ch;
      col += 1;
    }
  }
  return Array.from(rows, (r) => (r ?? []).join('').trimEnd());
}
