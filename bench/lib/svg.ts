/** A dependency-free SVG line chart: connect p50 (log scale, lower is better) against endpoints on the bridge. */

export interface Series {
  label: string;
  points: { x: number; y: number }[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The chart as SVG text: one line per series, a log-scale y axis in ms, a legend on the right. */
export function lineChart(title: string, subtitle: string, series: readonly Series[]): string {
  const W = 760, H = 440, L = 70, R = 200, T = 56, B = 56;
  const pw = W - L - R, ph = H - T - B;
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y) && p.y > 0);
  const xMax = Math.max(1, ...pts.map((p) => p.x));
  const lo = Math.floor(Math.log10(Math.min(...pts.map((p) => p.y), 1)));
  const hi = Math.ceil(Math.log10(Math.max(...pts.map((p) => p.y), 10)));
  const X = (x: number) => L + (x / xMax) * pw;
  const Y = (y: number) => T + ph - ((Math.log10(y) - lo) / (hi - lo)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${L}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${L}" y="40" fill="#555">${esc(subtitle)}</text>`);
  for (let d = lo; d <= hi; d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      if (Math.log10(v) > hi + 1e-9) continue;
      const y = Y(v).toFixed(1);
      out.push(`<line x1="${L}" x2="${L + pw}" y1="${y}" y2="${y}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
      out.push(`<text x="${L - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#444">${v >= 1 ? v : v.toPrecision(1)}</text>`);
    }
  }
  const xs = [...new Set(pts.map((p) => p.x))].sort((a, b) => a - b);
  for (const x of xs) {
    out.push(`<line x1="${X(x).toFixed(1)}" x2="${X(x).toFixed(1)}" y1="${T}" y2="${T + ph}" stroke="#eee"/>`);
    out.push(`<text x="${X(x).toFixed(1)}" y="${T + ph + 16}" text-anchor="middle" fill="#444">${x}</text>`);
  }
  out.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${L + pw / 2}" y="${H - 14}" text-anchor="middle">endpoints already on the bridge</text>`);
  out.push(`<text transform="translate(18 ${T + ph / 2}) rotate(-90)" text-anchor="middle">connect p50, ms (log scale, lower is better)</text>`);
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    const ok = s.points.filter((p) => Number.isFinite(p.y) && p.y > 0);
    if (ok.length > 1) out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${ok.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ')}"/>`);
    for (const p of ok) out.push(`<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p.y).toFixed(1)}" r="3.5" fill="${c}"><title>${esc(s.label)}: ${p.y.toFixed(3)} ms at ${p.x}</title></circle>`);
    const ly = T + 10 + i * 20;
    out.push(`<line x1="${L + pw + 14}" x2="${L + pw + 34}" y1="${ly}" y2="${ly}" stroke="${c}" stroke-width="2"/>`);
    out.push(`<text x="${L + pw + 40}" y="${ly}" dominant-baseline="middle">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
