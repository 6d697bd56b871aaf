/* assemble.c: non-streaming answers (see assemble.h). */
#include <cjson/cJSON.h>
#include <string.h>
#include <time.h>

#include "runtime/base/alloc.h"
#include "runtime/stream/assemble.h"

static void sl__text_append(sl_assembly_t *a, const sl_span_t *s) {
  /* Unescaping never grows the text. */
  if (a->text_len + s->n + 1 > a->text_cap) {
    size_t cap = a->text_cap ? a->text_cap : 1024;
    while (a->text_len + s->n + 1 > cap) cap *= 2;
    a->text = sl_realloc(a->text, cap);
    a->text_cap = cap;
  }
  size_t w = sl_json_unescape(a->text + a->text_len, a->text_cap - a->text_len, s->p, s->n);
  if (w != (size_t)-1) a->text_len += w;
  a->text[a->text_len] = '\0';
}

static char *sl__unescape_dup(const sl_span_t *s) {
  char *out = sl_malloc(s->n + 1);
  size_t w = sl_json_unescape(out, s->n + 1, s->p, s->n);
  out[w == (size_t)-1 ? 0 : w] = '\0';
  return out;
}

void sl_assembly_add(sl_assembly_t *a, const sl_event_t *ev) {
  if (ev->has_text) sl__text_append(a, &ev->text);
  for (int i = 0; i < ev->n_tool_calls; i++) {
    const sl_tool_delta_t *d = &ev->tool_calls[i];
    sl_asm_tool_t *t = NULL;
    for (int k = 0; k < a->ntools; k++)
      if (a->tools[k].index == d->index) t = &a->tools[k];
    if (t == NULL) {
      if (a->ntools == SL_ASM_MAX_TOOLS) continue;
      t = &a->tools[a->ntools++];
      memset(t, 0, sizeof(*t));
      t->index = d->index;
    }
    if (d->has_id && t->id == NULL) t->id = sl__unescape_dup(&d->id);
    if (d->has_name && t->name == NULL) t->name = sl__unescape_dup(&d->name);
    if (d->has_arguments) {
      if (t->args_len + d->arguments.n + 1 > t->args_cap) {
        t->args_cap = (t->args_len + d->arguments.n + 1) * 2;
        t->args = sl_realloc(t->args, t->args_cap);
      }
      size_t w = sl_json_unescape(t->args + t->args_len, t->args_cap - t->args_len, d->arguments.p,
                                  d->arguments.n);
      if (w != (size_t)-1) t->args_len += w;
      t->args[t->args_len] = '\0';
    }
  }
}

char *sl_assembly_body(const sl_assembly_t *a, const sl_asm_answer_t *ans, size_t *len) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", ans->id);
  cJSON_AddStringToObject(o, "object", ans->chat ? "chat.completion" : "text_completion");
  cJSON_AddNumberToObject(o, "created", (double)(ans->created ? ans->created : (int64_t)time(NULL)));
  cJSON_AddStringToObject(o, "model", ans->model);
  cJSON *choices = cJSON_AddArrayToObject(o, "choices");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  const char *text = a->text ? a->text : "";
  if (ans->chat) {
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    if (a->ntools > 0 && a->text_len == 0)
      cJSON_AddNullToObject(m, "content");
    else
      cJSON_AddStringToObject(m, "content", text);
    if (a->ntools > 0) {
      cJSON *tc = cJSON_AddArrayToObject(m, "tool_calls");
      for (int i = 0; i < a->ntools; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "id", a->tools[i].id ? a->tools[i].id : "");
        cJSON_AddStringToObject(t, "type", "function");
        cJSON *f = cJSON_AddObjectToObject(t, "function");
        cJSON_AddStringToObject(f, "name", a->tools[i].name ? a->tools[i].name : "");
        cJSON_AddStringToObject(f, "arguments", a->tools[i].args ? a->tools[i].args : "");
        cJSON_AddItemToArray(tc, t);
      }
    }
  } else {
    cJSON_AddStringToObject(c, "text", text);
  }
  cJSON_AddNullToObject(c, "logprobs");
  const char *fin = sl_finish_name(ans->finish);
  if (fin) cJSON_AddStringToObject(c, "finish_reason", fin); else cJSON_AddNullToObject(c, "finish_reason");
  cJSON_AddItemToArray(choices, c);
  cJSON *u = cJSON_AddObjectToObject(o, "usage");
  cJSON_AddNumberToObject(u, "prompt_tokens", (double)ans->prompt_tokens);
  cJSON_AddNumberToObject(u, "completion_tokens", (double)ans->completion_tokens);
  cJSON_AddNumberToObject(u, "total_tokens", (double)(ans->prompt_tokens + ans->completion_tokens));
  char *body = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  *len = body ? strlen(body) : 0;
  return body;
}

void sl_assembly_free_body(char *body) { cJSON_free(body); }

void sl_assembly_free(sl_assembly_t *a) {
  sl_free(a->text);
  for (int i = 0; i < a->ntools; i++) {
    sl_free(a->tools[i].id);
    sl_free(a->tools[i].name);
    sl_free(a->tools[i].args);
  }
  memset(a, 0, sizeof(*a));
}
