/* engine.c — requests → scheduled forward steps → sampled tokens, text and finish states.
 * See engine.h for the step; scheduler.h for batching and KV policy. */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

static double engine_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t engine_mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

const char *engine_finish_name(seq_finish f)
{
    switch (f) {
    case SEQ_FINISH_STOP: return "stop";
    case SEQ_FINISH_LENGTH: return "length";
    case SEQ_FINISH_ABORT: return "abort";
    default: return NULL;
    }
}

/* A step's host kv_slots array grows by doubling to the largest batch seen (sum of KV lengths). */
static void engine_reserve_kv_slots(engine_step_ctx *c, int64_t n)
{
    if (n <= c->cap_kv_slots) return;
    while (c->cap_kv_slots < n) c->cap_kv_slots = c->cap_kv_slots ? 2 * c->cap_kv_slots : 4096;
    free(c->kv_slots);
    c->kv_slots = log_xmalloc((size_t)c->cap_kv_slots * sizeof(int32_t));
}

static void engine_step_ctx_init(engine_step_ctx *c, size_t max_tokens, size_t max_seqs)
{
    int32_t **arrs[] = {&c->tokens, &c->positions, &c->slots, &c->token_seq, &c->logit_tokens};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) *arrs[i] = log_xmalloc(max_tokens * sizeof(int32_t));
    c->q_start = log_xmalloc((max_seqs + 1) * sizeof(int32_t));
    c->kv_start = log_xmalloc((max_seqs + 1) * sizeof(int32_t));
    engine_reserve_kv_slots(c, (int64_t)max_tokens * 4);
    c->seqs = log_xmalloc(max_seqs * sizeof(seq *));
    c->logit_seqs = log_xmalloc(max_seqs * sizeof(seq *));
    c->logit_rows = log_xmalloc(max_seqs * sizeof(int32_t));
    c->results = log_xmalloc(max_seqs * sizeof(sampling_result_t));
}

static void engine_step_ctx_free(engine_step_ctx *c)
{
    free(c->tokens); free(c->positions); free(c->slots); free(c->token_seq); free(c->logit_tokens);
    free(c->q_start); free(c->kv_start); free(c->kv_slots);
    free(c->seqs); free(c->logit_seqs); free(c->logit_rows); free(c->results);
}

status_t engine_create(model *m, const engine_args *args, const detok_vocab *vocab, const int32_t *eos_ids,
                       int32_t num_eos, engine **out)
{
    const model_config *c = &m->cfg;
    engine_args a = *args;
    if (a.max_model_len <= 0 || a.max_model_len > c->max_position_embeddings) {
        if (a.max_model_len > c->max_position_embeddings)
            return status_set(STATUS_INVALID_ARG, "max_model_len %d is larger than the model's max_position_embeddings %d",
                              a.max_model_len, c->max_position_embeddings);
        a.max_model_len = c->max_position_embeddings;
    }
    if (a.max_num_seqs <= 0) return status_set(STATUS_INVALID_ARG, "max_num_seqs must be >= 1, got %d", a.max_num_seqs);
    if (a.max_batch_tokens <= 0) return status_set(STATUS_INVALID_ARG, "max_batch_tokens must be >= 1, got %d", a.max_batch_tokens);
    if (a.max_batch_tokens < a.max_num_seqs)
        return status_set(STATUS_INVALID_ARG, "max_batch_tokens (%d) must be >= max_num_seqs (%d): every running sequence needs a token per step",
                          a.max_batch_tokens, a.max_num_seqs);
    if (a.chunked_prefill_size <= 0 || a.chunked_prefill_size > a.max_batch_tokens) a.chunked_prefill_size = a.max_batch_tokens;
    const int64_t per_token = model_kv_bytes_per_token(m);
    if (a.num_kv_slots <= 0 && a.kv_memory_bytes <= 0) {
        /* LightLLM's --mem-fraction: what is free after the weights, less the activations and
         * the (1 - mem_fraction) share of the memory kept back, holds the KV pool */
        size_t free_b = 0, total_b = 0;
        STATUS_TRY(m->be->ops->memory_info(m->be, &free_b, &total_b));
        if (!(a.mem_fraction > 0.0 && a.mem_fraction <= 1.0))
            return status_set(STATUS_INVALID_ARG, "mem_fraction must be in (0, 1], got %g", a.mem_fraction);
        const int64_t runtime = model_runtime_bytes(m, a.max_batch_tokens, a.max_model_len, a.max_num_seqs);
        a.kv_memory_bytes = (int64_t)free_b - runtime - (int64_t)((1.0 - a.mem_fraction) * (double)total_b);
        if (a.kv_memory_bytes <= 0)
            return status_set(STATUS_NO_MEMORY,
                              "no memory is left for the KV cache: %zu bytes free after the weights, %lld needed for "
                              "activations, %.0f%% of %zu kept back (raise mem_fraction or lower max_num_batched_tokens)",
                              free_b, (long long)runtime, 100.0 * (1.0 - a.mem_fraction), total_b);
    }
    if (a.num_kv_slots <= 0) {
        int64_t slots = a.kv_memory_bytes / per_token;
        const int64_t most = (int64_t)a.max_num_seqs * a.max_model_len;
        if (slots > most) slots = most;
        if (slots > INT32_MAX / 2) slots = INT32_MAX / 2;
        if (slots < 2)
            return status_set(STATUS_NO_MEMORY, "the KV cache budget of %lld bytes holds %lld tokens (%lld bytes each); need at least 2",
                              (long long)a.kv_memory_bytes, (long long)slots, (long long)per_token);
        a.num_kv_slots = (int32_t)slots;
    }
    engine *e = log_xcalloc(1, sizeof *e);
    e->m = m;
    e->vocab = vocab;
    e->args = a;
    status_t s = model_alloc_runtime(m, a.max_batch_tokens, a.max_model_len, a.num_kv_slots, a.max_num_seqs);
    if (s == STATUS_OK)
        s = scheduler_init(&e->sched, a.num_kv_slots, a.max_num_seqs, a.max_batch_tokens, a.chunked_prefill_size,
                           a.max_model_len, a.enable_prefix_caching);
    e->sched.estimate_max_new_tokens = a.estimate_max_new_tokens;
    if (s != STATUS_OK) {
        e->m = NULL; /* the caller still owns m on failure */
        free(e);
        return s;
    }
    e->num_eos = num_eos;
    e->eos_ids = log_xmalloc((size_t)(num_eos + 1) * sizeof(int32_t));
    if (num_eos > 0) memcpy(e->eos_ids, eos_ids, (size_t)num_eos * sizeof(int32_t));
    e->text_tmp = log_xmalloc((size_t)(vocab ? detok_max_token_bytes(vocab) : 0) + 16);
    const size_t S = (size_t)a.max_num_seqs;
    LL_ASSERT(ENGINE_MAX_INFLIGHT <= BACKEND_STEP_SLOTS);
    for (int i = 0; i < ENGINE_MAX_INFLIGHT; i++) {
        engine_step_ctx_init(&e->steps[i], (size_t)a.max_batch_tokens, S);
        e->steps[i].slot = i;
    }
    e->sample_rows = log_xmalloc(S * sizeof *e->sample_rows);
    e->banned = log_xmalloc(S * ENGINE_MAX_BANNED * sizeof(int32_t));
    e->cap_updates = e->cap_to_free = 64;
    e->updates = log_xmalloc((size_t)e->cap_updates * sizeof(seq *));
    e->to_free = log_xmalloc((size_t)e->cap_to_free * sizeof(seq *));
    e->cap_deferred = 16;
    e->deferred = log_xmalloc((size_t)e->cap_deferred * sizeof(seq *));
    *out = e;
    return STATUS_OK;
}

static void engine_free_request(engine *e, engine_request *r)
{
    for (int32_t i = 0; i < r->stops.num; i++) free(r->stops.strs[i]);
    free(r->stops.strs);
    free(r->stops.lens);
    free(r->stop_token_ids);
    if (r->grammar) grammar_cache_release(e->grammars, r->grammar);
    free(r);
}

static void engine_free_seq(engine *e, seq *q)
{
    engine_request *r = q->req;
    if (q->matcher) dpda_matcher_free(q->matcher);
    free(q->matcher);
    free(q->tokens);
    free(q->text);
    free(q);
    if (--r->num_live == 0) engine_free_request(e, r);
}

/* Structured output needs the vocabulary's byte trie and the grammar cache: made once, at the
 * first constrained request. */
static status_t engine_grammar_init(engine *e)
{
    if (e->grammars) return STATUS_OK;
    if (!e->vocab)
        return status_set(STATUS_INVALID_ARG, "structured output (a grammar or schema) needs the model's tokenizer; "
                                              "this engine has no vocabulary");
    STATUS_TRY(token_vocab_create(e->vocab, e->eos_ids, e->num_eos, &e->grammar_vocab));
    e->grammars = grammar_cache_create(e->grammar_vocab, 64);
    const int32_t words_model = (e->m->cfg.vocab_size + 31) / 32, words_vocab = token_vocab_mask_words(e->grammar_vocab);
    e->mask_words = words_model > words_vocab ? words_model : words_vocab;
    e->masks = log_xcalloc((size_t)e->args.max_num_seqs * (size_t)e->mask_words, sizeof(uint32_t));
    return STATUS_OK;
}

void engine_free(engine *e)
{
    if (!e) return;
    for (int32_t i = 0; i < e->num_to_free; i++) engine_free_seq(e, e->to_free[i]);
    for (int32_t i = 0; i < e->num_deferred; i++) engine_free_seq(e, e->deferred[i]);
    scheduler *s = &e->sched;
    while (s->num_running > 0) { seq *q = s->running[0]; scheduler_release(s, q); engine_free_seq(e, q); }
    while (s->num_waiting > 0) { seq *q = s->waiting[0]; scheduler_release(s, q); engine_free_seq(e, q); }
    if (s->running) scheduler_free(s);
    if (e->grammars) grammar_cache_free(e->grammars); /* every request released its grammar above */
    if (e->grammar_vocab) token_vocab_free(e->grammar_vocab);
    free(e->masks);
    free(e->eos_ids);
    free(e->text_tmp);
    for (int i = 0; i < ENGINE_MAX_INFLIGHT; i++) engine_step_ctx_free(&e->steps[i]);
    free(e->sample_rows);
    free(e->banned);
    free(e->updates);
    free(e->to_free);
    free(e->deferred);
    model_free(e->m);
    free(e);
}

static void engine_push(seq ***arr, int32_t *num, int32_t *cap, seq *q)
{
    if (*num == *cap) {
        *cap *= 2;
        *arr = realloc(*arr, (size_t)*cap * sizeof(seq *));
        LL_ASSERT(*arr);
    }
    (*arr)[(*num)++] = q;
}

static int engine_seq_live(const engine *e, int64_t req_id)
{
    const scheduler *s = &e->sched;
    for (int32_t i = 0; i < s->num_running; i++) if (s->running[i]->req_id == req_id) return 1;
    for (int32_t i = 0; i < s->num_waiting; i++) if (s->waiting[i]->req_id == req_id) return 1;
    return 0;
}

status_t engine_compile_grammar(engine *e, const engine_request_params *p)
{
    if (!p->grammar_kind) return STATUS_OK;
    STATUS_TRY(engine_grammar_init(e));
    grammar_compiled *gc = NULL;
    status_t s = grammar_cache_get(e->grammars, p->grammar_kind, p->grammar ? p->grammar : "", p->grammar_len,
                                   p->grammar_whitespace, &gc, NULL);
    if (s != STATUS_OK) return STATUS_INVALID_ARG; /* the front end's message names the problem */
    grammar_cache_release(e->grammars, gc);
    return STATUS_OK;
}

status_t engine_add_request(engine *e, int64_t req_id, const int32_t *prompt, int32_t num_prompt,
                            const engine_request_params *p)
{
    const int32_t vocab = e->m->cfg.vocab_size;
    STATUS_TRY(sampling_params_validate(&p->sp));
    if (num_prompt <= 0) return status_set(STATUS_INVALID_ARG, "prompt is empty: at least one token is needed");
    for (int32_t i = 0; i < num_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= vocab)
            return status_set(STATUS_INVALID_ARG, "prompt token id %d at index %d is outside the vocabulary [0, %d)", prompt[i], i, vocab);
    if (num_prompt >= e->args.max_model_len)
        return status_set(STATUS_INVALID_ARG, "prompt has %d tokens; the context limit (max_model_len) is %d, which leaves no room for output",
                          num_prompt, e->args.max_model_len);
    if (num_prompt + 1 > e->sched.kv.num_slots)
        return status_set(STATUS_INVALID_ARG, "prompt has %d tokens; the KV cache holds %d tokens in all (raise max_total_token_num)",
                          num_prompt, e->sched.kv.num_slots);
    for (int32_t i = 0; i < p->num_stop_token_ids; i++)
        if (p->stop_token_ids[i] < 0 || p->stop_token_ids[i] >= vocab)
            return status_set(STATUS_INVALID_ARG, "stop_token_ids[%d] = %d is outside the vocabulary [0, %d)", i, p->stop_token_ids[i], vocab);
    for (int32_t i = 0; i < p->num_stops; i++)
        if (p->stops[i][0] == '\0') return status_set(STATUS_INVALID_ARG, "stop[%d] is an empty string", i);
    if (engine_seq_live(e, req_id)) return status_set(STATUS_INVALID_ARG, "request id %lld is already running", (long long)req_id);
    grammar_compiled *gc = NULL;
    if (p->grammar_kind) {
        STATUS_TRY(engine_grammar_init(e));
        status_t s = grammar_cache_get(e->grammars, p->grammar_kind, p->grammar ? p->grammar : "", p->grammar_len,
                                       p->grammar_whitespace, &gc, NULL);
        if (s != STATUS_OK) return STATUS_INVALID_ARG; /* the front end's message names the problem */
    }

    engine_request *r = log_xcalloc(1, sizeof *r);
    r->grammar = gc;
    r->req_id = req_id;
    r->sp = p->sp;
    r->include_stop_str_in_output = p->include_stop_str_in_output;
    r->skip_special_tokens = p->skip_special_tokens;
    r->stops.num = p->num_stops;
    r->stops.strs = log_xcalloc((size_t)p->num_stops + 1, sizeof(char *));
    r->stops.lens = log_xcalloc((size_t)p->num_stops + 1, sizeof(size_t));
    for (int32_t i = 0; i < p->num_stops; i++) {
        r->stops.lens[i] = strlen(p->stops[i]);
        r->stops.strs[i] = log_xmalloc(r->stops.lens[i] + 1);
        memcpy(r->stops.strs[i], p->stops[i], r->stops.lens[i] + 1);
    }
    r->num_stop_token_ids = p->num_stop_token_ids;
    r->stop_token_ids = log_xmalloc((size_t)(p->num_stop_token_ids + 1) * sizeof(int32_t));
    if (p->num_stop_token_ids > 0) memcpy(r->stop_token_ids, p->stop_token_ids, (size_t)p->num_stop_token_ids * sizeof(int32_t));
    r->num_live = p->sp.n;

    int32_t max_tokens = p->sp.max_tokens;
    if (max_tokens > e->args.max_model_len - num_prompt) max_tokens = e->args.max_model_len - num_prompt;
    const uint64_t base_key = p->sp.has_seed ? engine_mix(p->sp.seed) : engine_mix(e->args.seed ^ engine_mix(e->num_requests));
    e->num_requests++;
    const double now = engine_now();
    for (int32_t i = 0; i < p->sp.n; i++) {
        seq *q = log_xcalloc(1, sizeof *q);
        q->req_id = req_id;
        q->sample_index = i;
        q->arrival = e->next_arrival++;
        q->req = r;
        q->group_prefilled = &r->group_prefilled;
        q->cap_tokens = num_prompt + max_tokens + 1;
        q->tokens = log_xmalloc((size_t)q->cap_tokens * sizeof(int32_t));
        memcpy(q->tokens, prompt, (size_t)num_prompt * sizeof(int32_t));
        q->num_tokens = q->num_prompt = q->dev_len = q->num_launched = num_prompt;
        q->max_tokens = max_tokens;
        q->num_cached_tokens = -1;
        q->rng_key = engine_mix(base_key ^ engine_mix((uint64_t)i + 0x51ull));
        q->text_cap = 256;
        q->text = log_xmalloc(q->text_cap);
        q->stop_string = q->stop_token = -1;
        q->arrival_time = now;
        if (gc) {
            q->matcher = log_xmalloc(sizeof *q->matcher);
            dpda_matcher_init(q->matcher, gc->d);
            q->matcher->max_rollback_bytes = ENGINE_GRAMMAR_ROLLBACK_BYTES;
        }
        scheduler_add(&e->sched, q);
    }
    return STATUS_OK;
}

/* A sequence is done: release its KV.  Finished inside a complete it is reported by that
 * complete (report_now), otherwise by the next; it is freed after that. */
static void engine_finish(engine *e, seq *q, seq_finish why, int report_now)
{
    if (q->status != SEQ_FINISHED) scheduler_release(&e->sched, q);
    q->finish = why;
    q->finish_time = engine_now();
    if (report_now) engine_push(&e->to_free, &e->num_to_free, &e->cap_to_free, q);
    else engine_push(&e->deferred, &e->num_deferred, &e->cap_deferred, q);
}

status_t engine_abort(engine *e, int64_t req_id)
{
    int found = 0;
    scheduler *s = &e->sched;
    for (int pass = 0; pass < 2; pass++) {
        seq **list = pass ? s->waiting : s->running;
        int32_t *num = pass ? &s->num_waiting : &s->num_running;
        for (int32_t i = *num - 1; i >= 0; i--) {
            seq *q = list[i];
            if (q->req_id != req_id) continue;
            engine_finish(e, q, SEQ_FINISH_ABORT, 0);
            found = 1;
        }
    }
    if (!found) return status_set(STATUS_NOT_FOUND, "no running request with id %lld", (long long)req_id);
    return STATUS_OK;
}

size_t engine_seq_stable_len(const seq *q)
{
    if (q->status == SEQ_FINISHED) return q->text_len;
    const engine_stop_strings *st = &q->req->stops;
    size_t keep = 0;
    for (int32_t i = 0; i < st->num; i++) {
        size_t k = st->lens[i] - 1 < q->text_len ? st->lens[i] - 1 : q->text_len;
        for (; k > keep; k--) {
            if (memcmp(q->text + q->text_len - k, st->strs[i], k) == 0) {
                keep = k;
                break;
            }
        }
    }
    size_t stable = q->text_len - keep;
    while (stable > 0 && stable < q->text_len && (((uint8_t)q->text[stable]) & 0xC0) == 0x80) stable--;
    return stable;
}

static void engine_text_reserve(seq *q, size_t extra)
{
    if (q->text_len + extra + 1 <= q->text_cap) return;
    while (q->text_len + extra + 1 > q->text_cap) q->text_cap *= 2;
    q->text = realloc(q->text, q->text_cap);
    LL_ASSERT(q->text);
}

static void engine_text_append(seq *q, const char *s, size_t n)
{
    engine_text_reserve(q, n);
    memcpy(q->text + q->text_len, s, n);
    q->text_len += n;
    q->text[q->text_len] = '\0';
}

static int engine_has_id(const int32_t *ids, int32_t n, int32_t id)
{
    for (int32_t i = 0; i < n; i++) if (ids[i] == id) return 1;
    return 0;
}

/* Appends the token execute sampled (already at tokens[num_tokens]); returns the finish reason
 * (NONE to continue). */
static seq_finish engine_append(engine *e, seq *q, const sampling_result_t *res)
{
    engine_request *r = q->req;
    const int32_t tok = res->token;
    LL_ASSERT(q->num_tokens < q->dev_len && q->tokens[q->num_tokens] == tok);
    q->num_tokens++;
    q->num_output++;
    q->has_new_token = 1;
    q->last = *res;
    e->num_generated_tokens++;
    if (q->num_output == 1) q->first_token_time = engine_now();

    const int is_eos = !r->sp.ignore_eos && engine_has_id(e->eos_ids, e->num_eos, tok);
    const int is_stop_tok = engine_has_id(r->stop_token_ids, r->num_stop_token_ids, tok);
    if (is_eos || is_stop_tok) {
        if (is_stop_tok) q->stop_token = tok;
        if (is_stop_tok && r->include_stop_str_in_output && e->vocab) {
            size_t n = detok_append(e->vocab, &q->detok, tok, 0, e->text_tmp);
            engine_text_append(q, e->text_tmp, n);
        }
        return SEQ_FINISH_STOP;
    }
    if (e->vocab) {
        const size_t old_len = q->text_len;
        size_t n = detok_append(e->vocab, &q->detok, tok, r->skip_special_tokens, e->text_tmp);
        engine_text_append(q, e->text_tmp, n);
        if (r->stops.num > 0 && n > 0) {
            size_t pos;
            int k = detok_find_stop(q->text, q->text_len, old_len, (const char *const *)r->stops.strs, r->stops.lens, r->stops.num, &pos);
            if (k >= 0) {
                q->stop_string = k;
                q->text_len = pos + (r->include_stop_str_in_output ? r->stops.lens[k] : 0);
                q->text[q->text_len] = '\0';
                q->detok.num_pending = 0;
                return SEQ_FINISH_STOP;
            }
        }
    }
    if (q->num_output >= q->max_tokens || q->num_tokens >= e->args.max_model_len) return SEQ_FINISH_LENGTH;
    return SEQ_FINISH_NONE;
}

static void engine_flush_text(engine *e, seq *q)
{
    if (!e->vocab || q->detok.num_pending == 0) return;
    size_t n = detok_flush(&q->detok, e->text_tmp);
    engine_text_append(q, e->text_tmp, n);
}

/* Launch side: what sampling needs for the sequence's next token (row i of step c).  Reads only
 * what the host side does not change meanwhile. */
static void engine_sample_row(engine *e, const engine_step_ctx *c, int32_t i, backend_sample_row *row)
{
    seq *q = c->logit_seqs[i];
    const engine_request *r = q->req;
    const int32_t num_output = q->num_launched - q->num_prompt;
    LL_ASSERT(!(sampling_params_has_penalty(&r->sp) || q->matcher) || q->dev_len == q->num_launched); /* needs_history honoured */
    const uint32_t *mask = NULL;
    if (q->matcher) { /* the grammar takes the tokens collected since, then gives the allowed set */
        for (; q->num_prompt + q->num_matched < q->dev_len; q->num_matched++)
            if (!token_mask_advance_token(e->grammar_vocab, q->matcher, q->tokens[q->num_prompt + q->num_matched]))
                e->num_grammar_rejects++; /* cannot happen: the token was drawn under the mask */
        uint32_t *m = e->masks + (int64_t)i * e->mask_words;
        grammar_compiled_fill_mask(r->grammar, q->matcher, m); /* writes every word of the tokenizer's
                                                                  * ids; those past it stay 0 (calloc) */
        mask = m;
    }
    int32_t *banned = e->banned + (int64_t)i * ENGINE_MAX_BANNED, num_banned = 0;
    if (num_output < r->sp.min_tokens) {
        for (int32_t k = 0; k < e->num_eos && num_banned < ENGINE_MAX_BANNED; k++) banned[num_banned++] = e->eos_ids[k];
        for (int32_t k = 0; k < r->num_stop_token_ids && num_banned < ENGINE_MAX_BANNED; k++)
            banned[num_banned++] = r->stop_token_ids[k];
    }
    *row = (backend_sample_row){
        .sp = &r->sp, .prompt_ids = q->tokens, .num_prompt = q->num_prompt, .output_ids = q->tokens + q->num_prompt,
        .num_output = num_output, .banned_ids = banned, .num_banned = num_banned, .allowed_mask = mask,
        .rng_key = q->rng_key, .rng_counter = (uint64_t)num_output, .table_index = c->logit_rows[i],
    };
}

/* Complete side: the host takes the token execute sampled. */
static void engine_take(engine *e, seq *q, const sampling_result_t *res)
{
    seq_finish f = engine_append(e, q, res);
    engine_push(&e->updates, &e->num_updates, &e->cap_updates, q);
    if (f != SEQ_FINISH_NONE) {
        if (f != SEQ_FINISH_STOP || q->stop_string < 0) engine_flush_text(e, q);
        engine_finish(e, q, f, 1);
    }
}

status_t engine_prepare(engine *e, engine_step_ctx **out)
{
    scheduler *s = &e->sched;
    *out = NULL;
    LL_ASSERT(engine_num_inflight(e) < ENGINE_MAX_INFLIGHT);
    scheduler_schedule(s);
    for (int32_t i = 0; i < s->num_finished_by_capacity; i++) {
        seq *q = s->finished_by_capacity[i];
        engine_flush_text(e, q);
        engine_finish(e, q, SEQ_FINISH_LENGTH, 0);
    }
    if (s->num_batch == 0) return STATUS_OK;

    engine_step_ctx *c = &e->steps[e->num_prepared % ENGINE_MAX_INFLIGHT];
    int32_t T = 0, L = 0;
    int64_t total_kv = 0;
    c->needs_history = 0;
    int32_t max_q = 0, max_kv = 0;
    for (int32_t i = 0; i < s->num_batch; i++) total_kv += s->batch[i]->num_computed + s->batch[i]->q_len;
    engine_reserve_kv_slots(c, total_kv);
    total_kv = 0;
    for (int32_t i = 0; i < s->num_batch; i++) {
        seq *q = s->batch[i];
        const int32_t *row = kv_cache_row(&s->kv, q->row);
        const int32_t kv_len = q->num_computed + q->q_len;
        c->seqs[i] = q;
        q->num_inflight++;
        c->q_start[i] = T;
        c->kv_start[i] = (int32_t)total_kv;
        memcpy(c->kv_slots + total_kv, row, (size_t)kv_len * sizeof(int32_t));
        total_kv += kv_len;
        if (q->q_len > max_q) max_q = q->q_len;
        if (kv_len > max_kv) max_kv = kv_len;
        for (int32_t j = 0; j < q->q_len; j++) {
            const int32_t pos = q->num_computed + j;
            c->tokens[T] = pos < q->num_tokens ? q->tokens[pos] : -1 - q->row; /* next-token table */
            c->positions[T] = pos;
            c->slots[T] = row[pos];
            c->token_seq[T] = i;
            T++;
        }
        if (kv_len == seq_len(q)) {
            c->logit_tokens[L] = T - 1;
            c->logit_seqs[L] = q;
            c->logit_rows[L] = q->row;
            L++;
            q->num_pending++;
            c->needs_history |= sampling_params_has_penalty(&q->req->sp) || q->matcher != NULL;
        }
    }
    c->q_start[s->num_batch] = T;
    c->kv_start[s->num_batch] = (int32_t)total_kv;
    c->batch = (forward_batch){
        .num_tokens = T, .token_ids = c->tokens, .positions = c->positions, .slots = c->slots,
        .token_seq = c->token_seq, .num_seqs = s->num_batch, .q_start = c->q_start, .kv_start = c->kv_start,
        .kv_slots = c->kv_slots, .max_q_len = max_q, .max_kv_len = max_kv, .num_logits = L,
        .logit_tokens = c->logit_tokens,
    };
    c->status = STATUS_OK;
    c->error[0] = '\0';
    scheduler_commit(s);
    e->num_prepared++;
    *out = c;
    return STATUS_OK;
}

void engine_launch_sample(engine *e, engine_step_ctx *c)
{
    const backend_ops *ops = e->m->be->ops;
    if (c->sampled || c->status != STATUS_OK) return;
    c->sampled = 1;
    const int32_t L = c->batch.num_logits;
    for (int32_t i = 0; i < L; i++) engine_sample_row(e, c, i, &e->sample_rows[i]);
    ops->sample(e->m->be, c->slot, c->logits, L, e->m->cfg.vocab_size, e->sample_rows);
    for (int32_t i = 0; i < L; i++) c->logit_seqs[i]->num_launched++;
    c->status = ops->last_error(e->m->be);
    if (c->status != STATUS_OK) snprintf(c->error, sizeof c->error, "%s", status_message());
}

void engine_launch(engine *e, engine_step_ctx *c)
{
    const backend_ops *ops = e->m->be->ops;
    c->forward_seconds = 0.0;
    c->sampled = 0;
    c->status = ops->last_error(e->m->be); /* a failed step before this one: refuse */
    if (c->status == STATUS_OK) {
        ops->step_begin(e->m->be, c->slot);
        c->logits = model_forward_logits(e->m, &c->batch);
        ops->step_forward_end(e->m->be, c->slot);
        c->status = ops->last_error(e->m->be);
    }
    if (c->status != STATUS_OK) snprintf(c->error, sizeof c->error, "%s", status_message());
    else if (!c->needs_history) engine_launch_sample(e, c);
}

void engine_collect(engine *e, engine_step_ctx *c)
{
    const backend_ops *ops = e->m->be->ops;
    if (c->status != STATUS_OK) return;
    ops->sample_wait(e->m->be, c->slot, c->batch.num_logits, c->results, &c->forward_seconds);
    c->status = ops->last_error(e->m->be);
    if (c->status != STATUS_OK) {
        snprintf(c->error, sizeof c->error, "%s", status_message());
        return;
    }
    for (int32_t i = 0; i < c->batch.num_logits; i++) {
        seq *q = c->logit_seqs[i];
        LL_ASSERT(q->dev_len < q->cap_tokens);
        q->tokens[q->dev_len++] = c->results[i].token;
    }
}

status_t engine_complete(engine *e, engine_step_ctx *c)
{
    for (int32_t i = 0; i < e->num_updates; i++) e->updates[i]->has_new_token = 0;
    e->num_updates = 0;
    const int32_t num_reported = e->num_to_free; /* reported by earlier completes */
    for (int32_t i = 0; i < e->num_deferred; i++) {
        engine_push(&e->updates, &e->num_updates, &e->cap_updates, e->deferred[i]);
        engine_push(&e->to_free, &e->num_to_free, &e->cap_to_free, e->deferred[i]);
    }
    e->num_deferred = 0;
    status_t st = STATUS_OK;
    if (c) {
        LL_ASSERT(c == &e->steps[e->num_completed % ENGINE_MAX_INFLIGHT] && engine_num_inflight(e) > 0);
        e->num_completed++;
        e->forward_seconds += c->forward_seconds;
        if (c->status != STATUS_OK) {
            st = status_set(c->status, "%s", c->error);
        } else {
            e->num_steps++;
            for (int32_t i = 0; i < c->batch.num_logits; i++) {
                seq *q = c->logit_seqs[i];
                q->num_pending--;
                if (q->status != SEQ_FINISHED) engine_take(e, q, &c->results[i]); /* else: finished meanwhile */
            }
        }
        for (int32_t i = 0; i < c->batch.num_seqs; i++) c->seqs[i]->num_inflight--;
    }
    int32_t kept = 0;
    for (int32_t i = 0; i < e->num_to_free; i++) {
        seq *q = e->to_free[i];
        if (i < num_reported && q->num_inflight == 0) engine_free_seq(e, q);
        else e->to_free[kept++] = q;
    }
    e->num_to_free = kept;
    return st;
}

status_t engine_step_ahead(engine *e)
{
    engine_step_ctx *next = NULL, *prev = e->ahead;
    STATUS_TRY(engine_prepare(e, &next));
    if (next) engine_launch(e, next); /* the forward, and the sampling unless it reads prev's tokens */
    if (prev) engine_collect(e, prev);
    if (next) engine_launch_sample(e, next); /* computed while next's forward runs */
    e->ahead = next;
    return engine_complete(e, prev);
}

status_t engine_step(engine *e)
{
    LL_ASSERT(!e->ahead);
    engine_step_ctx *c;
    STATUS_TRY(engine_prepare(e, &c));
    if (c) {
        engine_launch(e, c);
        engine_launch_sample(e, c);
        engine_collect(e, c);
    }
    return engine_complete(e, c);
}

int engine_has_unfinished(const engine *e)
{
    return e->sched.num_running > 0 || e->sched.num_waiting > 0;
}

status_t engine_score(engine *e, const int32_t *ids, int32_t n, float *logits)
{
    scheduler *s = &e->sched;
    engine_step_ctx *c = &e->steps[0];
    LL_ASSERT(engine_num_inflight(e) == 0);
    const int32_t vocab = e->m->cfg.vocab_size;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return status_set(STATUS_INVALID_ARG, "token id %d at index %d is outside the vocabulary [0, %d)", ids[i], i, vocab);
    if (n <= 0 || n > e->args.max_model_len)
        return status_set(STATUS_INVALID_ARG, "score needs 1..%d tokens, got %d", e->args.max_model_len, n);
    const int32_t row = kv_cache_alloc_row(&s->kv);
    if (row < 0) return status_set(STATUS_CAPACITY, "score: all %d request rows are in use", s->max_num_seqs);
    if (!scheduler_make_room(s, n)) {
        kv_cache_release_row(&s->kv, row);
        return status_set(STATUS_CAPACITY, "score: %d tokens do not fit in the %d free KV slots", n, s->kv.num_free);
    }
    int32_t *slots = kv_cache_row(&s->kv, row);
    kv_cache_alloc(&s->kv, n, slots);
    for (int32_t done = 0; done < n; done += e->args.max_batch_tokens) {
        int32_t q = n - done;
        if (q > e->args.max_batch_tokens) q = e->args.max_batch_tokens;
        for (int32_t j = 0; j < q; j++) {
            c->tokens[j] = ids[done + j];
            c->positions[j] = done + j;
            c->slots[j] = slots[done + j];
            c->token_seq[j] = 0;
            c->logit_tokens[j] = j;
        }
        const int32_t q_start[2] = {0, q}, kv_start[2] = {0, done + q};
        const forward_batch batch = {
            .num_tokens = q, .token_ids = c->tokens, .positions = c->positions, .slots = c->slots,
            .token_seq = c->token_seq, .num_seqs = 1, .q_start = q_start, .kv_start = kv_start, .kv_slots = slots,
            .max_q_len = q, .max_kv_len = done + q, .num_logits = q, .logit_tokens = c->logit_tokens,
        };
        model_forward(e->m, &batch, logits + (int64_t)done * vocab);
        if (e->m->be->ops->last_error(e->m->be) != STATUS_OK) break;
    }
    kv_cache_release(&s->kv, slots, n);
    kv_cache_release_row(&s->kv, row);
    return e->m->be->ops->last_error(e->m->be);
}
