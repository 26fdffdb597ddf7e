/**
 * Sets a PDF's document information (Title, Creator ...) by an incremental update: a new
 * Info dictionary, a one-entry cross-reference section and a trailer pointing back at the
 * old one are appended, and nothing Chromium wrote is changed (PDF 32000-1, 7.5.6). The
 * other entries of the old Info dictionary (Producer, dates) are kept.
 *
 * Chromium (Skia) writes a classic cross-reference table; a PDF whose trailer cannot be
 * read that way is returned as it is.
 */
export function withDocumentInfo(pdf: Buffer, info: Record<string, string>): Buffer {
  const tail = pdf.subarray(Math.max(0, pdf.length - 4096)).toString('latin1');
  const trailer = /trailer\s*<<([\s\S]*?)>>\s*startxref\s+(\d+)\s+%%EOF\s*$/.exec(tail);
  const size = trailer && /\/Size (\d+)/.exec(trailer[1]!);
  const root = trailer && /\/Root (\d+ \d+ R)/.exec(trailer[1]!);
  if (!trailer || !size || !root) return pdf;
  const oldInfo = /\/Info (\d+) 0 R/.exec(trailer[1]!);
  const number = oldInfo ? Number(oldInfo[1]) : Number(size[1]);
  const entries = { ...keptEntries(pdf, oldInfo?.[1]), ...Object.fromEntries(Object.entries(info).map(([k, v]) => [k, textString(v)])) };
  const object = `\n${number} 0 obj\n<<${Object.entries(entries).map(([k, v]) => `/${k} ${v}`).join('\n')}>>\nendobj\n`;
  const xrefAt = pdf.length + object.length;
  const xref = `xref\n${number} 1\n${String(pdf.length + 1).padStart(10, '0')} 00000 n \n`;
  const newSize = Math.max(Number(size[1]), number + 1);
  const end = `trailer\n<</Size ${newSize}\n/Root ${root[1]}\n/Info ${number} 0 R\n/Prev ${trailer[2]}>>\nstartxref\n${xrefAt}\n%%EOF\n`;
  return Buffer.concat([pdf, Buffer.from(object + xref + end, 'latin1')]);
}

/** The entries of the old Info dictionary, as written (its values are simple strings). */
function keptEntries(pdf: Buffer, number: string | undefined): Record<string, string> {
  if (!number) return {};
  const head = pdf.subarray(0, Math.min(pdf.length, 65_536)).toString('latin1');
  const dict = new RegExp(`(?:^|\\n)${number} 0 obj\\s*<<([\\s\\S]*?)>>\\s*endobj`).exec(head)?.[1];
  if (!dict) return {};
  const kept: Record<string, string> = {};
  for (const m of dict.matchAll(/\/(\w+)\s*(\((?:\\.|[^\\)])*\)|<[0-9A-Fa-f\s]*>)/g)) kept[m[1]!] = m[2]!;
  return kept;
}

/** A PDF text string any text survives: UTF-16BE with its byte order mark, in hex. */
function textString(text: string): string {
  const bytes = Buffer.from(`\uFEFF${text}`, 'utf16le').swap16();
  return `<${bytes.toString('hex').toUpperCase()}>`;
}
