/**
 * Seeded Gaussian noise. torch's generator cannot be reproduced in JS, so this engine defines its own
 * and documents it, so that any implementation can reproduce an image from its seed:
 *
 *  1. State: xoshiro128** (Blackman & Vigna), four uint32 words seeded from splitmix64(seed): the seed
 *     (a safe non-negative integer) is the splitmix64 state; two splitmix64 outputs, each split into
 *     (low word, high word), give s0..s3.
 *  2. Uniforms: u = ((a >>> 5) * 2^26 + (b >>> 6) + 1) / (2^53 + 1) from two consecutive 32-bit
 *     outputs a, b: a 53-bit uniform in the open interval (0, 1), so log(u) is finite.
 *  3. Normals: Box-Muller on consecutive uniform pairs (u1, u2): r = sqrt(-2 ln u1),
 *     z0 = r cos(2 pi u2), z1 = r sin(2 pi u2), emitted z0 then z1, rounded to float32.
 *  4. Layout: one generator per request; its values fill the unpacked latent [C, H, W] in row-major
 *     order, then the latent is packed (like diffusers' randn + _pack_latents). A request's noise thus
 *     depends only on its seed and size, never on its batch neighbours.
 *
 * V8's Math.log/cos/sin are fdlibm ports, so values are the same on every platform for a given Node
 * major; an engine upgrade that changed them would show up in the determinism tests.
 */
import { EngineError } from './errors.ts';

const MASK64 = (1n << 64n) - 1n;

function splitmix64(state: bigint): { next: bigint; output: bigint } {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  z = z ^ (z >> 31n);
  return { next, output: z };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export function assertValidSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new EngineError('BAD_REQUEST', `seed must be a non-negative safe integer, got ${seed}`);
  }
}

/** A deterministic stream of N(0, 1) float32 values. */
export class GaussianNoise {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | null = null;

  constructor(seed: number) {
    assertValidSeed(seed);
    const first = splitmix64(BigInt(seed));
    const second = splitmix64(first.next);
    this.s0 = Number(first.output & 0xffffffffn);
    this.s1 = Number(first.output >> 32n);
    this.s2 = Number(second.output & 0xffffffffn);
    this.s3 = Number(second.output >> 32n);
    // xoshiro must not start from the all-zero state (splitmix64 makes this practically impossible).
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A generator at an explicit xoshiro128** state (for known-answer tests). */
  static fromState(words: readonly [number, number, number, number]): GaussianNoise {
    const noise = new GaussianNoise(0);
    [noise.s0, noise.s1, noise.s2, noise.s3] = words.map((word) => word >>> 0) as [number, number, number, number];
    return noise;
  }

  /** Next raw 32-bit output of xoshiro128**. */
  nextUint32(): number {
    const result = (Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in the open interval (0, 1) with 53 random bits. */
  nextUniform(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b + 1) / (9007199254740992 + 1);
  }

  nextGaussian(): number {
    if (this.spare !== null) {
      const value = this.spare;
      this.spare = null;
      return value;
    }
    const u1 = this.nextUniform();
    const u2 = this.nextUniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    this.spare = Math.fround(radius * Math.sin(angle));
    return Math.fround(radius * Math.cos(angle));
  }

  fill(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.nextGaussian();
    return out;
  }
}

/** `count` float32 N(0,1) values for `seed` (a fresh generator each call). */
export function gaussianNoise(seed: number, count: number): Float32Array {
  return new GaussianNoise(seed).fill(new Float32Array(count));
}
