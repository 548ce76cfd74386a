import type { PromptRequest } from '../../services/common/messages.ts';

/** A PromptRequest with every kind of field: nulls, a seed over 2^32, the row it came from. */
export const sampleRequest: PromptRequest = {
  jobId: 'job1',
  row: 3,
  promptIndex: 1,
  promptCount: 2,
  prompt: 'a red fox in snow',
  seed: 2 ** 40 + 7,
  width: null,
  height: 64,
  steps: null,
  guidance: 3.5,
  rowJson: '{"prompt":"a red fox in snow"}',
  createdAt: 1_700_000_000_000,
};
