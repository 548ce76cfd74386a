import { loadGrammar, type Grammar, type SceneAttributes } from './grammar.ts';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Reads a prompt with the scene grammar: the shape word, the colour right before it (after an
 * optional size word), the colour next to "background"/"backdrop", the longest position phrase and
 * the size word. Returns null when the prompt names no shape of the grammar (a free-form prompt,
 * which the judge does not score). Case and extra spaces do not matter.
 */
export function parsePrompt(prompt: string, grammar: Grammar = loadGrammar()): SceneAttributes | null {
  const text = ` ${prompt
    .toLowerCase()
    .replace(/[^a-z ]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()} `;
  const colours = Object.keys(grammar.colours).map(escape).join('|');
  const shapes = grammar.shapes.map(escape).join('|');
  const sizeWords = Object.values(grammar.sizes)
    .flatMap((s) => s.words)
    .filter((w) => w !== '')
    .map(escape)
    .join('|');
  const object = new RegExp(` (?:(${sizeWords}) )?(${colours}) (${shapes}) `).exec(text);
  if (!object) return null;
  const attributes: SceneAttributes = { shape: object[3], colour: object[2] };
  const sizeWord = object[1];
  attributes.size = sizeWord === undefined ? sizeOfWord(grammar, '') : sizeOfWord(grammar, sizeWord);
  const background = new RegExp(` (${colours}) (?:background|backdrop) `).exec(text);
  if (background) attributes.background = background[1];
  // Longest phrase first, so "top left" wins over "top" and "left".
  const phrases = Object.entries(grammar.positions)
    .flatMap(([name, p]) => p.phrases.map((phrase) => ({ name, phrase: phrase.toLowerCase() })))
    .sort((a, b) => b.phrase.length - a.phrase.length);
  const rest = text.replace(object[0], ' ');
  const found = phrases.find(({ phrase }) => rest.includes(` ${phrase} `));
  if (found) attributes.position = found.name;
  return attributes;
}

function sizeOfWord(grammar: Grammar, word: string): string | undefined {
  return Object.entries(grammar.sizes).find(([, s]) => s.words.includes(word))?.[0];
}
