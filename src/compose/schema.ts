/**
 * The JSON schema (draft-07, for ajv) of the part of a compose file polyarch reads: services'
 * `build`, `image`, `platform`, `depends_on`, and top-level `name` and `secrets`. Everything
 * else is allowed and ignored, like `docker compose build` ignores what it does not build.
 * Types only: `build` and friends use type unions instead of oneOf so that an error names one
 * rule (`must be array`), not every alternative.
 */
const stringList = { type: 'array', items: { type: 'string' } } as const;
const scalar = { type: ['string', 'number', 'boolean', 'null'] } as const;
/** `KEY: value` mapping or `["KEY=value", ...]` list. */
const mapOrList = {
  type: ['object', 'array'],
  items: { type: 'string' },
  additionalProperties: scalar,
} as const;

export const BUILD_KEYS = [
  'context',
  'dockerfile',
  'dockerfile_inline',
  'args',
  'target',
  'platforms',
  'tags',
  'labels',
  'cache_from',
  'cache_to',
  'no_cache',
  'pull',
  'secrets',
  'network',
  'additional_contexts',
] as const;

export const composeSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  type: 'object',
  properties: {
    name: { type: 'string' },
    version: { type: 'string' },
    services: {
      type: 'object',
      additionalProperties: {
        type: ['object', 'null'],
        properties: {
          image: { type: 'string' },
          platform: { type: 'string' },
          depends_on: {
            type: ['array', 'object'],
            items: { type: 'string' },
            additionalProperties: { type: ['object', 'null'] },
          },
          build: {
            type: ['string', 'object'],
            properties: {
              context: { type: 'string' },
              dockerfile: { type: 'string' },
              dockerfile_inline: { type: 'string' },
              args: mapOrList,
              target: { type: 'string' },
              platforms: stringList,
              tags: stringList,
              labels: mapOrList,
              cache_from: stringList,
              cache_to: stringList,
              no_cache: { type: 'boolean' },
              pull: { type: 'boolean' },
              network: { type: 'string' },
              additional_contexts: mapOrList,
              secrets: {
                type: 'array',
                items: {
                  type: ['string', 'object'],
                  required: ['source'],
                  properties: { source: { type: 'string' }, target: { type: 'string' } },
                },
              },
            },
          },
        },
      },
    },
    secrets: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        properties: { file: { type: 'string' }, environment: { type: 'string' } },
      },
    },
  },
} as const;
