/* shm_req.h — the request pool in shared memory (LightLLM v1.1's ShmReq objects).
 *
 * CONTRACT (implementation: engine/shm_req.c)
 * One segment (core/shm.h, kind SHM_KIND_REQ_POOL) holds a pool header and `num_slots`
 * fixed-layout slots.  The API server writes a request into a slot, the router schedules it,
 * the backend streams tokens back through the slot's output ring (DESIGN.md §2).
 *
 * Segment layout (offsets from the segment base, every region 64-byte aligned):
 *   [0, 64)        shm_header
 *   [64, 192)      shm_req_pool_header (config, region offsets, claim hint, counters)
 *   slots_offset   shm_req              [num_slots]                          (1728 bytes each)
 *   prompts_offset int32_t              [num_slots, max_prompt_tokens]       prompt token ids
 *   records_offset shm_req_token_record [num_slots, num_ring_records]        (192 bytes each)
 *   texts_offset   uint8_t              [num_slots, num_ring_text_bytes]     UTF-8 bytes
 *   grammars_offset char                [num_slots, max_grammar_bytes]       grammar specs
 * Only fixed-width types, natural alignment and explicit padding; static_asserts pin every size
 * and the key offsets.  SHM_REQ_LAYOUT_VERSION changes whenever any of it changes (including
 * sampling_params_t, which the slot embeds); attach refuses another version.
 *
 * Layout history: v1 had no grammar; v2 adds the grammar region, the slot's grammar_kind /
 * grammar_bytes and SHM_REQ_FLAG_GRAMMAR_WHITESPACE, and widens error_message to 1024 bytes (the
 * grammar compiler's messages quote the offending input).
 *
 * GRAMMAR (structured generation): a request's grammar spec is its kind (SHM_REQ_GRAMMAR_*:
 * engine_request_params.grammar_kind by name), its text (the JSON Schema as JSON text, the regex,
 * the choices as a JSON list, or the GBNF/EBNF grammar; UTF-8) and the whitespace flag.  The text
 * lives in the slot's row of the grammar region, NUL-terminated, so a spec holds at most
 * max_grammar_bytes - 1 bytes (the server's --max-grammar-bytes; 0 = no grammar requests); a
 * longer one is STATUS_INVALID_ARG at submit naming the grammar.  The region is separate from the
 * prompt so both keep their full capacity; pages of it are touched only by slots that carry a
 * spec.  The backend hands kind/text/length to engine_add_request, which compiles it.
 *
 * Slot lifecycle (state, C11 atomics; stores release, loads acquire):
 *   FREE --claim (front end, CAS)--> CLAIMED --submit--> SUBMITTED --mark_running (backend, CAS)-->
 *   RUNNING --finish--> FINISHED;  the last release --> FREE (from any state).
 * ref_count: claim sets it to 1 (the front end's reference).  Every other process that holds the
 * slot (router, backend) takes its own reference — shm_req_try_acquire(slot, generation) when it
 * only knows the slot by number (it fails if the slot was freed or reused: `generation` is bumped
 * by every claim, so a stale number cannot touch a new request), shm_req_add_ref when a holder
 * hands a reference on.  shm_req_release drops one; the one that drops the last sets FREE.  A
 * slot is reset at claim time, never at release, so a process reads a slot's fields only while
 * it holds a reference (a FREE slot may be claimed and rewritten at any moment).  A process that
 * dies holding references leaks the slot until the server restarts (a dead child makes the
 * server exit, DESIGN.md §8).  The router finds new work by scanning for SUBMITTED slots and
 * orders it by submit_seq (FCFS).
 *
 * Who writes what:
 *   front end (state CLAIMED): request id, group id / sample index (the n samples of a request
 *     are n slots with one group id), sampling params, flags, stop strings / ids, prompt, grammar;
 *     read-only after submit.  abort_requested: any holder, any time (a disconnecting client).
 *   router: nothing in the slot except abort handling (it may finish a SUBMITTED slot it never
 *     handed to a backend, with SHM_REQ_FINISH_ABORT).
 *   backend (state RUNNING): num_cached_tokens, timestamps, the ring's producer side, then the
 *     finish fields and state FINISHED (release): everything written before is visible to a
 *     reader that loads FINISHED (acquire).
 *
 * OUTPUT RING (single producer: the backend; single consumer: the front end): a ring of token
 * records and a ring of text bytes (the detokenized UTF-8 stream), each with monotonic 64-bit
 * write/read counters on separate cache lines (producer publishes with a release store of the
 * write counter, consumer frees space with a release store of the read counter).  A record's
 * text_offset/text_bytes locate the bytes that token added in the text stream (offset = bytes
 * pushed before it), so a consumer can correlate logprobs with text; the two rings are popped
 * independently and the consumer must drain both.  shm_req_push_token writes the record and its
 * text together or nothing.  BACK-PRESSURE: when either ring lacks room the producer never
 * overwrites; push returns 0 ("full") and the backend keeps the token and retries at its next
 * step (the request simply waits for its reader; other requests are unaffected).  The backend
 * must push every token before calling finish; a consumer that sees FINISHED drains the rings
 * once more and then has everything.  shm_req_pop_text never splits a UTF-8 sequence (given a
 * producer that pushes whole sequences and max_bytes >= 4).
 *
 * Errors: bad config or request fields are STATUS_INVALID_ARG naming the field; a full pool is
 * shm_req_claim returning -1 (the server answers 503).  Calling a function in the wrong state
 * (submit twice, release without a reference) is our bug: LL_ASSERT.
 */
#ifndef LIGHTLLM_ENGINE_SHM_REQ_H
#define LIGHTLLM_ENGINE_SHM_REQ_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/log.h"
#include "core/shm.h"
#include "core/status.h"
#include "engine/sampling.h"

#define SHM_REQ_LAYOUT_VERSION 2u
#define SHM_REQ_MAX_SLOTS 65536
#define SHM_REQ_MAX_STOP_STRINGS 4
#define SHM_REQ_MAX_STOP_STRING_BYTES 64
#define SHM_REQ_MAX_STOP_TOKEN_IDS 16
#define SHM_REQ_MAX_TOP_LOGPROBS 20
#define SHM_REQ_ERROR_MESSAGE_BYTES 1024
#define SHM_REQ_MAX_GRAMMAR_BYTES (1u << 24)      /* upper bound of max_grammar_bytes */

enum {
    SHM_REQ_STATE_FREE = 0,
    SHM_REQ_STATE_CLAIMED = 1,    /* front end writing */
    SHM_REQ_STATE_SUBMITTED = 2,  /* visible to the router */
    SHM_REQ_STATE_RUNNING = 3,    /* the backend owns the output */
    SHM_REQ_STATE_FINISHED = 4,   /* the backend is done; finish fields valid */
};

enum {
    SHM_REQ_FINISH_NONE = 0,
    SHM_REQ_FINISH_STOP = 1,      /* EOS, a stop token or a stop string */
    SHM_REQ_FINISH_LENGTH = 2,    /* max_tokens or the context length */
    SHM_REQ_FINISH_ABORT = 3,     /* abort_requested honoured */
    SHM_REQ_FINISH_ERROR = 4,     /* error_message says why */
};

enum {
    SHM_REQ_STOP_NONE = 0,        /* EOS or not stopped */
    SHM_REQ_STOP_TOKEN = 1,       /* stop_reason_value = the stop token id */
    SHM_REQ_STOP_STRING = 2,      /* stop_reason_value = index into stop_strings */
};

enum {
    SHM_REQ_FLAG_INCLUDE_STOP_STR_IN_OUTPUT = 1u << 0,
    SHM_REQ_FLAG_SKIP_SPECIAL_TOKENS = 1u << 1,
    SHM_REQ_FLAG_GRAMMAR_WHITESPACE = 1u << 2,      /* grammar_whitespace: bounded whitespace in JSON */
    /* ignore_eos lives in params.ignore_eos (one source of truth) */
};

enum {
    SHM_REQ_GRAMMAR_NONE = 0,     /* unconstrained */
    SHM_REQ_GRAMMAR_JSON_SCHEMA = 1,
    SHM_REQ_GRAMMAR_REGEX = 2,
    SHM_REQ_GRAMMAR_CHOICE = 3,
    SHM_REQ_GRAMMAR_EBNF = 4,
    SHM_REQ_GRAMMAR_NUM_KINDS = 5,
};

/* One output token; 192 bytes. */
typedef struct shm_req_token_record {
    int32_t token_id;
    float logprob;                                   /* 0 when logprobs are off */
    int32_t rank;                                    /* 1 = best; 0 when off */
    int32_t num_top;                                 /* valid entries of top_* */
    int32_t top_ids[SHM_REQ_MAX_TOP_LOGPROBS];
    float top_logprobs[SHM_REQ_MAX_TOP_LOGPROBS];
    uint64_t text_offset;                            /* set by push: bytes of the text stream before this token's */
    uint32_t text_bytes;                             /* set by push: bytes this token added (0: incomplete UTF-8) */
    uint32_t flags;                                  /* SHM_REQ_RECORD_* */
} shm_req_token_record;

enum {
    /* the producer's last record of a sequence that ends with this token: the slot turns
     * FINISHED right after its text is out, so a reader can report both together */
    SHM_REQ_RECORD_FINAL = 1u << 0,
};

/* One slot; 1728 bytes (27 cache lines).  Offsets are pinned by static_asserts in shm_req.c. */
typedef struct shm_req {
    /* lifecycle (offset 0) */
    _Atomic uint32_t state;                          /* SHM_REQ_STATE_* */
    _Atomic uint32_t ref_count;
    _Atomic uint32_t abort_requested;
    uint32_t slot_index;                             /* constant: this slot's number */
    _Atomic uint64_t generation;                     /* bumped by each claim */
    uint64_t submit_seq;                             /* pool-wide arrival order, from 1, set by submit */
    int64_t request_id;
    int64_t group_id;                                /* shared by the n samples of a request */
    int32_t sample_index;                            /* 0..n-1 */
    int32_t num_samples;                             /* n */
    int32_t num_prompt_tokens;
    uint32_t flags;                                  /* SHM_REQ_FLAG_* */
    /* request, written by the front end while CLAIMED (offset 64) */
    sampling_params_t params;                        /* 64 bytes */
    uint32_t num_stop_strings;
    uint32_t num_stop_token_ids;
    uint32_t stop_string_bytes[SHM_REQ_MAX_STOP_STRINGS];
    int32_t stop_token_ids[SHM_REQ_MAX_STOP_TOKEN_IDS];
    char stop_strings[SHM_REQ_MAX_STOP_STRINGS][SHM_REQ_MAX_STOP_STRING_BYTES]; /* not NUL-terminated */
    uint32_t grammar_kind;                           /* SHM_REQ_GRAMMAR_* */
    uint32_t grammar_bytes;                          /* text bytes in the grammar region (no NUL) */
    /* results, written by the backend (offset 480) */
    uint32_t finish_reason;                          /* SHM_REQ_FINISH_* */
    uint32_t stop_reason_kind;                       /* SHM_REQ_STOP_* */
    int32_t stop_reason_value;                       /* token id or stop string index */
    int32_t num_cached_tokens;                       /* prompt tokens served from the prefix cache */
    int64_t claim_us;                                /* shm_req_now_us() at claim / submit / mark_running / */
    int64_t submit_us;                               /*   first push_token / finish; 0 = not yet */
    int64_t start_us;
    int64_t first_token_us;
    int64_t finish_us;
    char error_message[SHM_REQ_ERROR_MESSAGE_BYTES]; /* NUL-terminated, for SHM_REQ_FINISH_ERROR */
    uint8_t reserved1[40];
    /* output ring, producer side (offset 1600) */
    _Atomic uint64_t record_write;
    _Atomic uint64_t text_write;
    uint8_t reserved2[48];
    /* output ring, consumer side (offset 1664) */
    _Atomic uint64_t record_read;
    _Atomic uint64_t text_read;
    uint8_t reserved3[48];
} shm_req;

/* In the segment after shm_header; 128 bytes. */
typedef struct shm_req_pool_header {
    int32_t num_slots;
    int32_t max_prompt_tokens;
    uint32_t num_ring_records;
    uint32_t num_ring_text_bytes;
    uint32_t slot_bytes;                             /* sizeof(shm_req) of the creator */
    uint32_t record_bytes;                           /* sizeof(shm_req_token_record) of the creator */
    uint64_t slots_offset;                           /* region offsets from the segment base */
    uint64_t prompts_offset;
    uint64_t records_offset;
    uint64_t texts_offset;
    uint64_t grammars_offset;
    _Atomic uint32_t claim_hint;                     /* where the next claim starts looking */
    _Atomic uint32_t num_in_use;                     /* slots not FREE */
    _Atomic uint64_t submit_counter;                 /* last submit_seq handed out */
    uint32_t max_grammar_bytes;
    uint32_t reserved1[11];
} shm_req_pool_header;

typedef struct shm_req_pool_config {
    int32_t num_slots;              /* 1..SHM_REQ_MAX_SLOTS */
    int32_t max_prompt_tokens;      /* >= 1: prompt capacity of every slot */
    uint32_t num_ring_records;      /* power of two in [2, 2^20]: token records per slot */
    uint32_t num_ring_text_bytes;   /* power of two in [64, 2^24]: text bytes per slot */
    uint32_t max_grammar_bytes;     /* 0, or a multiple of 64 in [64, 2^24]: grammar region per slot
                                     * (a spec holds max_grammar_bytes - 1 bytes; 0: none accepted) */
} shm_req_pool_config;

/* Process-local handle: pointers into this process's mapping. */
typedef struct shm_req_pool {
    shm_segment seg;
    int is_creator;
    shm_req_pool_header *header;
    shm_req *slots;                 /* [num_slots] */
    int32_t *prompts;               /* [num_slots, max_prompt_tokens] */
    shm_req_token_record *records;  /* [num_slots, num_ring_records] */
    uint8_t *texts;                 /* [num_slots, num_ring_text_bytes] */
    char *grammars;                 /* [num_slots, max_grammar_bytes] */
    int32_t num_slots;
    int32_t max_prompt_tokens;
    uint32_t num_ring_records;
    uint32_t num_ring_text_bytes;
    uint32_t max_grammar_bytes;
} shm_req_pool;

/* --- pool --- */
/* Creates the segment `name` (see shm_make_name) with every slot FREE, and publishes it. */
status_t shm_req_pool_create(shm_req_pool *pool, const char *name, const shm_req_pool_config *cfg);
/* Maps an existing pool; checks kind, layout version and the header's geometry. */
status_t shm_req_pool_attach(shm_req_pool *pool, const char *name);
/* Unmaps; safe on a zeroed or detached pool.  Never unlinks. */
void shm_req_pool_detach(shm_req_pool *pool);
/* Detaches and unlinks the name (the creator, at shutdown). */
status_t shm_req_pool_destroy(shm_req_pool *pool);
int32_t shm_req_pool_num_in_use(const shm_req_pool *pool);
/* Monotonic microseconds (CLOCK_MONOTONIC: comparable between processes of one host). */
int64_t shm_req_now_us(void);

static inline shm_req *shm_req_get(const shm_req_pool *pool, int32_t slot)
{
    LL_ASSERT(slot >= 0 && slot < pool->num_slots);
    return &pool->slots[slot];
}
/* The slot's prompt ids [max_prompt_tokens]; num_prompt_tokens are valid. */
static inline int32_t *shm_req_prompt(const shm_req_pool *pool, int32_t slot)
{
    LL_ASSERT(slot >= 0 && slot < pool->num_slots);
    return pool->prompts + (int64_t)slot * pool->max_prompt_tokens;
}

/* The slot's grammar text [max_grammar_bytes]: grammar_bytes bytes, then a NUL (when a spec is
 * set).  NULL when the pool has no grammar region. */
static inline const char *shm_req_grammar(const shm_req_pool *pool, int32_t slot)
{
    LL_ASSERT(slot >= 0 && slot < pool->num_slots);
    return pool->max_grammar_bytes ? pool->grammars + (int64_t)slot * pool->max_grammar_bytes : NULL;
}
/* "json_schema" | "regex" | "choice" | "ebnf" for SHM_REQ_GRAMMAR_*; NULL for NONE or unknown. */
const char *shm_req_grammar_kind_name(uint32_t kind);
/* The SHM_REQ_GRAMMAR_* of a name; STATUS_INVALID_ARG naming grammar_kind for another name. */
status_t shm_req_grammar_kind_from_name(const char *name, uint32_t *kind);

/* --- lifecycle --- */
/* Front end: takes a FREE slot (CAS), resets it, state CLAIMED, ref_count 1.  -1 when all
 * slots are in use. */
int32_t shm_req_claim(shm_req_pool *pool);
/* Front end, CLAIMED: the request's identity and options.  params is validated
 * (sampling_params_validate); num_samples = params->n; sample_index must be in [0, n). */
status_t shm_req_set_request(shm_req_pool *pool, int32_t slot, int64_t request_id, int64_t group_id,
                             int32_t sample_index, const sampling_params_t *params, uint32_t flags);
/* Front end, CLAIMED: 1..max_prompt_tokens ids. */
status_t shm_req_set_prompt(shm_req_pool *pool, int32_t slot, const int32_t *ids, int32_t num_ids);
/* Front end, CLAIMED: stop strings (strings[i] has string_bytes[i] bytes, 1..64; at most 4) and
 * stop token ids (at most 16).  NULL arrays with a count of 0 are fine. */
status_t shm_req_set_stop(shm_req_pool *pool, int32_t slot, const char *const *strings,
                          const int32_t *string_bytes, int32_t num_strings, const int32_t *token_ids,
                          int32_t num_token_ids);
/* Front end, CLAIMED: the grammar spec (see GRAMMAR above): kind != NONE, text[num_bytes] (no
 * NUL needed), whitespace 0/1.  STATUS_INVALID_ARG naming the field for an unknown kind or a
 * text that does not fit the slot's region (max_grammar_bytes - 1). */
status_t shm_req_set_grammar(shm_req_pool *pool, int32_t slot, uint32_t kind, const char *text, size_t num_bytes,
                             int whitespace);
/* Front end: CLAIMED -> SUBMITTED (release), after the prompt is set; assigns submit_seq. */
void shm_req_submit(shm_req_pool *pool, int32_t slot);
uint32_t shm_req_get_state(const shm_req_pool *pool, int32_t slot);
uint64_t shm_req_get_generation(const shm_req_pool *pool, int32_t slot);
/* Takes a reference if the slot is held (ref_count > 0) and still carries `generation`;
 * returns 1 on success, 0 if the slot was freed or reused. */
int shm_req_try_acquire(shm_req_pool *pool, int32_t slot, uint64_t generation);
/* Takes another reference on a slot the caller holds (asserts ref_count > 0). */
void shm_req_add_ref(shm_req_pool *pool, int32_t slot);
/* Drops a reference; returns 1 when it was the last (the slot is FREE now). */
int shm_req_release(shm_req_pool *pool, int32_t slot);
uint32_t shm_req_get_ref_count(const shm_req_pool *pool, int32_t slot);
/* Backend: SUBMITTED -> RUNNING (CAS); 0 if the slot is not SUBMITTED (e.g. already finished). */
int shm_req_mark_running(shm_req_pool *pool, int32_t slot);
/* Backend (RUNNING) or router (SUBMITTED): sets the finish fields, then FINISHED (release). */
void shm_req_finish(shm_req_pool *pool, int32_t slot, uint32_t finish_reason, uint32_t stop_reason_kind,
                    int32_t stop_reason_value);
/* As shm_req_finish with SHM_REQ_FINISH_ERROR and a message (truncated to fit). */
void shm_req_finish_error(shm_req_pool *pool, int32_t slot, const char *message);

/* --- abort --- */
void shm_req_set_abort(shm_req_pool *pool, int32_t slot);
int shm_req_is_abort_requested(const shm_req_pool *pool, int32_t slot);

/* --- output ring --- */
/* Producer: whether num_records records and num_text_bytes text bytes fit now. */
int shm_req_can_push(const shm_req_pool *pool, int32_t slot, uint32_t num_records, uint32_t num_text_bytes);
/* Producer: pushes one record (its text_offset/text_bytes are filled in) and its text bytes
 * (text_bytes <= num_ring_text_bytes), both or neither.  1 = pushed, 0 = full (retry later). */
int shm_req_push_token(shm_req_pool *pool, int32_t slot, const shm_req_token_record *rec, const char *text,
                       uint32_t text_bytes);
/* Producer: text with no token (e.g. the detokenizer's final flush).  1 = pushed, 0 = full. */
int shm_req_push_text(shm_req_pool *pool, int32_t slot, const char *text, uint32_t text_bytes);
/* Consumer: pops up to max_records records into out[max_records]; returns how many. */
int32_t shm_req_pop_tokens(shm_req_pool *pool, int32_t slot, shm_req_token_record *out, int32_t max_records);
/* Consumer: pops up to max_bytes text bytes into out[max_bytes], never ending inside a UTF-8
 * sequence (fewer bytes then); returns how many. */
uint32_t shm_req_pop_text(shm_req_pool *pool, int32_t slot, char *out, uint32_t max_bytes);
uint32_t shm_req_num_pending_tokens(const shm_req_pool *pool, int32_t slot);
uint32_t shm_req_num_pending_text_bytes(const shm_req_pool *pool, int32_t slot);

#endif
