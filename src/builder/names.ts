/**
 * Generated builder names, like buildx's (docker's namesgenerator): `adjective_noun`,
 * readable, and checked for uniqueness by the caller.
 *
 *   generateName((n) => taken.has(n))   // e.g. "brave_lovelace"
 */
import { randomInt } from 'node:crypto';

const ADJECTIVES = [
  'agile',
  'amazing',
  'bold',
  'brave',
  'calm',
  'clever',
  'cool',
  'eager',
  'elated',
  'epic',
  'fervent',
  'focused',
  'gallant',
  'happy',
  'jolly',
  'keen',
  'kind',
  'lucid',
  'modest',
  'nifty',
  'peaceful',
  'quirky',
  'relaxed',
  'sharp',
  'stoic',
  'sweet',
  'tender',
  'upbeat',
  'vibrant',
  'zen',
];

const NOUNS = [
  'babbage',
  'bardeen',
  'curie',
  'darwin',
  'dijkstra',
  'einstein',
  'euler',
  'fermat',
  'feynman',
  'galois',
  'gauss',
  'hopper',
  'hypatia',
  'kepler',
  'knuth',
  'lamport',
  'lovelace',
  'maxwell',
  'meitner',
  'newton',
  'noether',
  'pascal',
  'ritchie',
  'shannon',
  'tesla',
  'thompson',
  'torvalds',
  'turing',
  'wozniak',
  'yonath',
];

/** A random `adjective_noun` that `taken` rejects not; after a few collisions a number is appended. */
export function generateName(taken: (name: string) => boolean): string {
  const pick = () => `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${NOUNS[randomInt(NOUNS.length)]}`;
  for (let i = 0; i < 20; i++) {
    const n = pick();
    if (!taken(n)) return n;
  }
  // 900 combinations: a crowded store gets a numeric suffix (docker does the same on retry).
  for (;;) {
    const n = `${pick()}${randomInt(1, 1000)}`;
    if (!taken(n)) return n;
  }
}
