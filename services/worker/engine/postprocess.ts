/**
 * VAE output -> uint8 RGB, matching diffusers' VaeImageProcessor.postprocess(output_type="pil"):
 * (x * 0.5 + 0.5).clamp(0, 1) in float32, then numpy `(x * 255).round().astype(uint8)`.
 * numpy rounds half to even and Math.round does not (2.5 -> 2 vs 3), which is visible in uint8
 * parity, hence roundHalfToEven.
 */

const f32 = Math.fround;

/** numpy.round / Python round() for one value: ties go to the even integer. */
export function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** One float32 decoder value in [-1, 1] to its uint8 level, with float32 intermediate rounding. */
export function decoderValueToUint8(value: number): number {
  let unit = f32(f32(value * 0.5) + 0.5);
  if (!(unit > 0)) unit = 0; // NaN lands here too and becomes 0, as numpy's uint8 cast gives on x86
  if (unit > 1) unit = 1;
  return roundHalfToEven(f32(unit * 255));
}

/**
 * Converts one image of a decoder output batch, laid out [B, 3, H, W] (NCHW), to HWC uint8 RGB.
 */
export function decoderOutputToRgb(decoded: Float32Array, batchIndex: number, height: number, width: number): Uint8Array {
  const plane = height * width;
  const base = batchIndex * 3 * plane;
  const rgb = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const channelBase = base + c * plane;
    for (let p = 0; p < plane; p++) rgb[p * 3 + c] = decoderValueToUint8(decoded[channelBase + p]!);
  }
  return rgb;
}
