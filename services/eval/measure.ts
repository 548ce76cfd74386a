/**
 * Measures a rendered scene with plain geometry (no model): the background colour from the border,
 * the foreground as the pixels nearer the foreground colour than the background, then its colour,
 * centroid, area, holes, bounding-box extent and convex-hull solidity. Deterministic: the same pixels
 * give the same measurement.
 */
import { loadGrammar, type Grammar, type Rgb } from './grammar.ts';

export interface Measurement {
  /** Nearest grammar colour of the border's median pixel. */
  background: string;
  /** Nearest grammar colour of the foreground, or null when there is no foreground. */
  colour: string | null;
  shape: string | null;
  position: string | null;
  size: string | null;
  /** Foreground pixels (the largest connected component) and the enclosed background (holes). */
  area: number;
  holes: number;
  /** Centroid in pixels (x right, y down). */
  centroid: [number, number] | null;
  /** (area + holes) / bounding-box area: 1 for a square, π/4 for a circle, 1/2 for a triangle. */
  extent: number;
  /** (area + holes) / convex-hull area: about 1 for convex shapes, about 1/2 for a five-point star. */
  solidity: number;
}

/** Thresholds of the shape decision, from the grammar's shape proportions (see README.md). */
export const SHAPE_RULES = { ringHoleFraction: 0.08, starSolidity: 0.8, squareExtent: 0.88, circleExtent: 0.65 } as const;
/** A pixel is a foreground candidate this far (RGB distance) from the background colour. */
const CANDIDATE_DISTANCE = 60;

const dist2 = (a: Rgb, b: Rgb) => (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2;

export function nearestColour(rgb: Rgb, grammar: Grammar = loadGrammar()): string {
  let best = '';
  let bestD = Infinity;
  for (const [name, c] of Object.entries(grammar.colours)) {
    const d = dist2(rgb, c);
    if (d < bestD) [best, bestD] = [name, d];
  }
  return best;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** Area of each shape of the grammar, in units of its size radius squared (filled, holes included). */
export function shapeAreaFactors(grammar: Grammar = loadGrammar()): Record<string, number> {
  const g = grammar.geometry;
  const triangle = ((3 * Math.sqrt(3)) / 4) * g.triangleRadius ** 2;
  const star = 5 * g.starOuter * g.starInner * Math.sin(Math.PI / 5);
  return { circle: Math.PI, ring: Math.PI, square: (2 * g.squareHalfSide) ** 2, triangle, star };
}

/** Convex hull area (monotone chain) of integer points. */
function hullArea(points: [number, number][]): number {
  const pts = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return 0;
  const cross = (o: [number, number], a: [number, number], b: [number, number]) =>
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: [number, number][] = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2]!, lower[lower.length - 1]!, p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: [number, number][] = [];
  for (let i = pts.length - 1; i >= 0; i--) {
    const p = pts[i]!;
    while (upper.length >= 2 && cross(upper[upper.length - 2]!, upper[upper.length - 1]!, p) <= 0) upper.pop();
    upper.push(p);
  }
  const hull = [...lower.slice(0, -1), ...upper.slice(0, -1)];
  let area = 0;
  for (let i = 0; i < hull.length; i++) {
    const a = hull[i]!;
    const b = hull[(i + 1) % hull.length]!;
    area += a[0] * b[1] - b[0] * a[1];
  }
  return Math.abs(area) / 2;
}

/** 4-connected components of `mask`; returns the labels of the largest one's pixels. */
function largestComponent(mask: Uint8Array, width: number, height: number): Uint8Array {
  const label = new Int32Array(mask.length).fill(-1);
  let best = -1;
  let bestSize = 0;
  let next = 0;
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || label[start] !== -1) continue;
    let size = 0;
    stack.push(start);
    label[start] = next;
    while (stack.length) {
      const i = stack.pop()!;
      size++;
      const x = i % width;
      const y = (i - x) / width;
      for (const j of [x > 0 ? i - 1 : -1, x < width - 1 ? i + 1 : -1, y > 0 ? i - width : -1, y < height - 1 ? i + width : -1]) {
        if (j >= 0 && mask[j] && label[j] === -1) {
          label[j] = next;
          stack.push(j);
        }
      }
    }
    if (size > bestSize) [best, bestSize] = [next, size];
    next++;
  }
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) out[i] = label[i] === best ? 1 : 0;
  return out;
}

/** Background pixels not reachable from the border without crossing the foreground. */
function enclosed(mask: Uint8Array, width: number, height: number): Uint8Array {
  const outside = new Uint8Array(mask.length);
  const stack: number[] = [];
  for (let x = 0; x < width; x++) stack.push(x, (height - 1) * width + x);
  for (let y = 0; y < height; y++) stack.push(y * width, y * width + width - 1);
  while (stack.length) {
    const i = stack.pop()!;
    if (outside[i] || mask[i]) continue;
    outside[i] = 1;
    const x = i % width;
    const y = (i - x) / width;
    if (x > 0) stack.push(i - 1);
    if (x < width - 1) stack.push(i + 1);
    if (y > 0) stack.push(i - width);
    if (y < height - 1) stack.push(i + width);
  }
  const holes = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) holes[i] = !mask[i] && !outside[i] ? 1 : 0;
  return holes;
}

/**
 * Measures one image. `pixels` holds `channels` bytes per pixel (RGB or RGBA, row-major); only the
 * first three channels are read.
 */
export function measureImage(
  pixels: Uint8Array,
  width: number,
  height: number,
  channels: number,
  grammar: Grammar = loadGrammar(),
): Measurement {
  const n = width * height;
  const at = (i: number): Rgb => [pixels[i * channels]!, pixels[i * channels + 1]!, pixels[i * channels + 2]!];
  const border: Rgb[] = [];
  for (let x = 0; x < width; x++) border.push(at(x), at((height - 1) * width + x));
  for (let y = 1; y < height - 1; y++) border.push(at(y * width), at(y * width + width - 1));
  const bg: Rgb = [median(border.map((p) => p[0])), median(border.map((p) => p[1])), median(border.map((p) => p[2]))];
  const background = nearestColour(bg, grammar);
  const none: Measurement = {
    background,
    colour: null,
    shape: null,
    position: null,
    size: null,
    area: 0,
    holes: 0,
    centroid: null,
    extent: 0,
    solidity: 0,
  };

  const distances = new Float64Array(n);
  const candidates: number[] = [];
  for (let i = 0; i < n; i++) {
    distances[i] = Math.sqrt(dist2(at(i), bg));
    if (distances[i]! > CANDIDATE_DISTANCE) candidates.push(i);
  }
  if (candidates.length < 4) return none;
  // The foreground colour: the median of the half of the candidates farthest from the background
  // (anti-aliased edges are mixtures of both colours).
  const core = [...candidates].sort((a, b) => distances[b]! - distances[a]!).slice(0, Math.max(2, Math.ceil(candidates.length / 2)));
  const fg: Rgb = [median(core.map((i) => at(i)[0])), median(core.map((i) => at(i)[1])), median(core.map((i) => at(i)[2]))];
  const raw = new Uint8Array(n);
  for (let i = 0; i < n; i++) raw[i] = dist2(at(i), fg) < dist2(at(i), bg) ? 1 : 0;
  const mask = largestComponent(raw, width, height);
  const holeMask = enclosed(mask, width, height);

  let area = 0;
  let holes = 0;
  let sx = 0;
  let sy = 0;
  let [minX, minY, maxX, maxY] = [width, height, -1, -1];
  const corners: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    if (holeMask[i]) holes++;
    if (!mask[i]) continue;
    const x = i % width;
    const y = (i - x) / width;
    area++;
    sx += x + 0.5;
    sy += y + 0.5;
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
    corners.push([x, y], [x + 1, y], [x, y + 1], [x + 1, y + 1]);
  }
  if (area < 4) return none;
  const filled = area + holes;
  const extent = filled / ((maxX - minX + 1) * (maxY - minY + 1));
  const solidity = filled / Math.max(1, hullArea(corners));
  const centroid: [number, number] = [sx / area, sy / area];

  let shape: string;
  if (holes / filled > SHAPE_RULES.ringHoleFraction) shape = 'ring';
  else if (solidity < SHAPE_RULES.starSolidity) shape = 'star';
  else if (extent > SHAPE_RULES.squareExtent) shape = 'square';
  else if (extent > SHAPE_RULES.circleExtent) shape = 'circle';
  else shape = 'triangle';

  const col = Math.min(2, Math.floor(centroid[0] / (width / 3)));
  const row = Math.min(2, Math.floor(centroid[1] / (height / 3)));
  const position = Object.entries(grammar.positions).find(([, p]) => p.cell[0] === col && p.cell[1] === row)?.[0] ?? null;

  // Size: the radius that gives this area for this shape, then the nearest size radius (in ratio).
  const radius = Math.sqrt(filled / (shapeAreaFactors(grammar)[shape] ?? Math.PI));
  let size: string | null = null;
  let bestRatio = Infinity;
  for (const [name, s] of Object.entries(grammar.sizes)) {
    const ratio = Math.abs(Math.log(radius / s.radius));
    if (ratio < bestRatio) [size, bestRatio] = [name, ratio];
  }
  return { background, colour: nearestColour(fg, grammar), shape, position, size, area, holes, centroid, extent, solidity };
}
