/**
 * The scene grammar of the bundled demo model (grammar.json beside this file): colours, shapes,
 * positions, sizes and phrasings. tools/flux_train renders and captions its training set from the same
 * file, so what the model was taught and what the judge checks cannot drift apart.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Rgb = readonly [number, number, number];

export interface Grammar {
  image: { width: number; height: number };
  colours: Record<string, Rgb>;
  shapes: string[];
  positions: Record<string, { cell: readonly [number, number]; phrases: string[] }>;
  sizes: Record<string, { radius: number; words: string[] }>;
  geometry: {
    squareHalfSide: number;
    triangleRadius: number;
    triangleDrop: number;
    starOuter: number;
    starInner: number;
    ringHole: number;
  };
  cellCentres: readonly [number, number, number];
  jitter: number;
  templates: string[];
  heldOut: { modulus: number };
}

export const GRAMMAR_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), 'grammar.json');

let cached: Grammar | undefined;

/** The grammar file, read once. */
export function loadGrammar(): Grammar {
  cached ??= JSON.parse(fs.readFileSync(GRAMMAR_PATH, 'utf8')) as Grammar;
  return cached;
}

/** The attributes a prompt asks for; a field is absent when the prompt does not say. */
export interface SceneAttributes {
  colour?: string;
  shape?: string;
  position?: string;
  size?: string;
  background?: string;
}

export const ATTRIBUTES = ['colour', 'shape', 'position', 'size', 'background'] as const;
export type Attribute = (typeof ATTRIBUTES)[number];
