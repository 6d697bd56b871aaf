/* assemble.h: the answer to a non-streaming request, assembled from the
 * engine's streamed events.
 *
 * sluice always streams from the engine; a client that asked for one JSON
 * answer gets the events' text and tool-call fragments joined (JSON
 * unescaped as they come), then one chat.completion or text_completion
 * object in OpenAI's shape.  The text grows by doubling; tool calls are
 * kept per index, at most SL_ASM_MAX_TOOLS.
 */
#ifndef SL_ASSEMBLE_H
#define SL_ASSEMBLE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/upstream/oai.h"

#define SL_ASM_MAX_TOOLS 16

typedef struct {
  int index;
  char *id, *name, *args;
  size_t args_len, args_cap;
} sl_asm_tool_t;

typedef struct {
  char *text;
  size_t text_len, text_cap;
  sl_asm_tool_t tools[SL_ASM_MAX_TOOLS];
  int ntools;
} sl_assembly_t;

/* What the answer says besides the assembled content. */
typedef struct {
  const char *id;        /* the engine's id, or the request id */
  const char *model;     /* the engine's model name, or the requested one */
  int64_t created;       /* 0: now */
  int chat;              /* chat.completion (1) or text_completion (0) */
  sl_finish_t finish;
  int64_t prompt_tokens, completion_tokens;
} sl_asm_answer_t;

/* Adds an event's text and tool-call fragments. */
void sl_assembly_add(sl_assembly_t *a, const sl_event_t *ev);

/* The answer as one JSON object (NUL-terminated, *len set), to be freed
 * with sl_assembly_free_body. */
char *sl_assembly_body(const sl_assembly_t *a, const sl_asm_answer_t *ans, size_t *len);
void sl_assembly_free_body(char *body);

/* Frees what a holds (a itself is the caller's). */
void sl_assembly_free(sl_assembly_t *a);

#endif
