/**
 * FLUX latent layout. The transformer sees the VAE latent [C, H, W] as a sequence of 2x2 patches:
 * packed[i*(W/2)+j][c*4 + p*2 + q] = latent[c][2i+p][2j+q]  (diffusers FluxPipeline._pack_latents),
 * and each patch carries a position id [0, i, j] (_prepare_latent_image_ids).
 */

/** Shape of one image's latents, derived from the pixel size. */
export interface LatentGeometry {
  /** Latent channels C (transformer in_channels / 4; 16 for FLUX). */
  channels: number;
  /** Latent height H in latent pixels (2 * (height // (vaeScaleFactor*2))). */
  height: number;
  /** Latent width W in latent pixels. */
  width: number;
  /** Number of image tokens: (H/2) * (W/2). */
  sequenceLength: number;
  /** Packed feature size per token: 4C. */
  packedChannels: number;
}

export function latentGeometry(pixelWidth: number, pixelHeight: number, vaeScaleFactor: number, channels: number): LatentGeometry {
  const height = 2 * Math.floor(pixelHeight / (vaeScaleFactor * 2));
  const width = 2 * Math.floor(pixelWidth / (vaeScaleFactor * 2));
  return {
    channels,
    height,
    width,
    sequenceLength: (height / 2) * (width / 2),
    packedChannels: channels * 4,
  };
}

/** Packs one [C, H, W] latent into [(H/2)(W/2), 4C]. */
export function packLatents(latent: Float32Array, geometry: LatentGeometry): Float32Array {
  const { channels, height, width } = geometry;
  const halfW = width / 2;
  const packedChannels = channels * 4;
  const packed = new Float32Array(latent.length);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      const i = y >> 1;
      const p = y & 1;
      for (let x = 0; x < width; x++) {
        const j = x >> 1;
        const q = x & 1;
        packed[(i * halfW + j) * packedChannels + c * 4 + p * 2 + q] = latent[(c * height + y) * width + x]!;
      }
    }
  }
  return packed;
}

/** Inverse of packLatents: [(H/2)(W/2), 4C] back to [C, H, W]. */
export function unpackLatents(packed: Float32Array, geometry: LatentGeometry): Float32Array {
  const { channels, height, width } = geometry;
  const halfW = width / 2;
  const packedChannels = channels * 4;
  const latent = new Float32Array(packed.length);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      const i = y >> 1;
      const p = y & 1;
      for (let x = 0; x < width; x++) {
        const j = x >> 1;
        const q = x & 1;
        latent[(c * height + y) * width + x] = packed[(i * halfW + j) * packedChannels + c * 4 + p * 2 + q]!;
      }
    }
  }
  return latent;
}

/** Image position ids, row i*(W/2)+j = [0, i, j], flattened [(H/2)(W/2) * 3]. */
export function imagePositionIds(geometry: LatentGeometry): Float32Array {
  const halfH = geometry.height / 2;
  const halfW = geometry.width / 2;
  const ids = new Float32Array(halfH * halfW * 3);
  for (let i = 0; i < halfH; i++) {
    for (let j = 0; j < halfW; j++) {
      const row = (i * halfW + j) * 3;
      ids[row + 1] = i;
      ids[row + 2] = j;
    }
  }
  return ids;
}

/** Text position ids: all zeros, [T * 3]. */
export function textPositionIds(sequenceLength: number): Float32Array {
  return new Float32Array(sequenceLength * 3);
}
