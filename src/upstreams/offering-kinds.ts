/** What an upstream offers, by the list-changed notification that announces a change to it. */
export type OfferingKind = 'tools' | 'prompts' | 'resources';

/** Every offering kind (a change of unknown kind is a change of each). */
export const OFFERING_KINDS: readonly OfferingKind[] = ['tools', 'prompts', 'resources'];

/** The list methods of each kind (`resources/list_changed` covers resources and templates: MCP spec, server/resources). */
export const LIST_METHODS = {
  tools: ['tools/list'],
  prompts: ['prompts/list'],
  resources: ['resources/list', 'resources/templates/list'],
} as const;
