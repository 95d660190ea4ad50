/* token_mask.h — allowed-token bitmasks for a DPDA matcher over a real vocabulary.
 *
 * token_vocab: the vocabulary's byte strings as a trie, built once per vocabulary from the
 * detokenizer's token → bytes table (engine/detokenizer.h).  Nodes are stored in preorder
 * (byte, depth, end of subtree, tokens ending here), so a walk is a linear scan that skips a
 * rejected subtree in one jump; tokens sharing a prefix share its walk.  Special tokens and
 * empty byte strings are never allowed by a grammar; the EOS ids are allowed exactly when the
 * matcher is in an accepting state.
 *
 * token_mask_table: per (dpda, vocab) cache, filled lazily.  Its key is the top two states of
 * the parse stack (below, top).  For a key, one trie walk from a PARTIAL stack [below, top]
 * classifies every token: accepted or rejected whatever lies under `below`, or uncertain
 * (its walk pops `below`).  The entry stores the accepted tokens as a bitmask and the
 * uncertain ones as a list in trie order with the common-prefix length to the previous
 * entry.  A mask is then: copy the accepted bits, walk the uncertain list on the real stack
 * (shared prefixes walked once, a failed prefix skips every token that extends it), then EOS.
 * Uncertain tokens are typically few (those that close a string or value).
 *
 * Regions: when the top state loops at the same stack depth (inside a string, a number, any
 * repeated regular piece), its byte-level automaton up to where it leaves that depth is
 * numbered canonically and looked up in a cache held by the token_vocab, shared by all
 * grammars on the vocabulary (guarded by a mutex): the same piece in another place or another
 * schema reuses the classification, and a new one costs one table lookup per trie node.
 * Finding a region (and checking a bounded chain) reads the automaton a row at a time (every
 * class from one state, kept per table): classes that take the same edge ending after the
 * shift share one step, so a string's state costs a handful of steps, not one per class.
 * Skips: a region's trie walk keeps its local state after every node (regions accepting many
 * tokens).  When any classification walk reaches trie node i in a state x that loops over the
 * state below it, and x's region walk (from x) is back in x at node i, the tokens under i
 * behave exactly as in that walk: the accepted ones are the region's (copied as a range of the
 * trie order, or the region's whole set with the rest cleared when it covers most tokens) and
 * only those leaving the region are walked; when the result differs from that region's set in
 * few tokens, the entry shares the region's set and keeps the differences (tokens removed,
 * tokens added), so a mask copies a set many entries share and the table holds no copy.  The
 * same holds at the region's inner states (between the bytes of a UTF-8 character, inside an
 * escape): computing a region records all its states, so a node reached in any of them is
 * settled when the region's walk is in that same state there.  Tokens that leave a region are stepped from where they leave it (the
 * region's walk records the bytes read inside and the state left from) when that is cheaper
 * than walking them in trie order, in the order of (state left from, bytes from the exit on):
 * tokens that leave alike share their steps and a prefix that fails settles all that extend it
 * (a string's 1,300 quote-containing tokens are its closing quote and a few hundred distinct
 * tails, most rejected at their second byte); a classification walk settling many subtrees
 * over one of its own start nodes walks that list once for all of them.  A key of an object with additional properties,
 * a prefix of a declared key, the start of any string-like value thus costs the nodes before
 * the region is entered plus the tokens that leave it, not the whole trie.
 * Bounded chains: a piece repeated a bounded number of times (a string with maxLength:
 * `"` char{lo,hi} `"`) has one state per position, none of which loops.  From a position with
 * r repetitions left it is the unbounded loop U cut after r: a token that stays inside U is
 * accepted iff it starts at most r repetitions (characters; an escape or a UTF-8 character is
 * one, a token ending inside one counts it).  U is guessed from the position's first
 * character and checked state by state against the automaton (sound: a mismatch turns a step
 * into an exit or gives up); U's region walk records every accepted token's count, so each
 * position costs a shared bitmap (per (region, r), built once) plus the tokens that leave U
 * (they see lo and what follows the string) or start more than 24 characters, walked on the
 * real stack; a chain's states are checked 49 characters ahead and keep their labels.  When
 * that check met one real state per (state of U, characters started), a token that leaves U
 * is known to be at that state where it leaves, so only its bytes from there on are stepped,
 * grouped by (state, count, bytes from the exit) (a string's ~1,300 quote-containing tokens:
 * its closing quote after a few counts followed by a few tails), not each token in turn.  With
 * minLength only, the bounded part merges into the loop: U is then the loop's own region.
 * A state whose first character leads to a state that loops is not taken as a chain position
 * (the last bounded position of a minLength, or a declared key's first byte beside "any
 * string"): the trie walk settles it from that loop's region.
 * Runs: in a classification walk, a node whose step stays at the partial stack's depth in a
 * state y without a counter, where y's region (walked from its exits) is in y's own state, is
 * settled whole by that region, its own tokens included, and consecutive such siblings of one
 * region make one skip (keys beside declared keys: a declared prefix's children that leave the
 * declared names are a few runs of "any string", not a skip or a small walk each).  The tokens
 * leaving a region in such a walk are memoised by (exit state, bytes from the exit).  Each
 * region keeps its accepted set also by place in the trie order (bits), so the set of a walk
 * with many skips is assembled from those bits a word at a time.
 * First visits, constant factors: a walk reads the root's children from one small array (the
 * vocabulary's first bytes) and steps only those whose class the top's row does not reject; a
 * classification accepting at most 256 tokens (outside a shared set) is kept as a token list,
 * not a bitmap of the vocabulary; a state none of whose edges can come back to it at its depth
 * (from the edges alone, kept per state) is never searched for a region; END edges are read
 * off the edge in walks and region rows.  The children of a node with many (a key's first byte,
 * a declared key's prefix: most leave the declared names into "any string") are stepped from
 * [below, x] by x's row (one step per distinct edge) in grammars without counters, and a walk
 * fetches the records of the next siblings (the vocabulary keeps each node's children and
 * their bytes in arrays) while it steps one; once a child joins a run, the next siblings that
 * the row takes to the same state, where the region's walk is in that state too, join it
 * from those arrays without a node record each, and after a rejected child the next siblings
 * whose edge rejects are passed over the same way.  The first mask (no state below) steps only
 * the first bytes whose edge does not reject.  A region is looked up by the runs of its byte
 * table through a hash index (a piece met before in the same grammar by its table over
 * classes), not by writing and comparing the 256-wide table.  The lists walked in trie order
 * or by exits read their bytes from one array each (the exits' bytes in exit order), and a
 * region entry's uncertain tokens are kept in exit order too (when no state of the region is
 * counted), so a mask walks them sharing their tails (a string value's closing quote followed
 * by a few hundred tails) instead of one by one in trie order.
 * A token_mask_table is not thread-safe: one per thread, or external locking
 * (grammar_cache.h does the latter).  The walks' memo tables (160 KB) are the calling thread's,
 * shared by every table it classifies for and freed when the thread exits, so a new grammar's
 * first walk does not zero its own.
 *
 * Masks: uint32 words [token_vocab_mask_words(v)], bit (i % 32) of word i / 32 set = token i
 * allowed (sampling_sample_row's allowed_mask layout).
 *
 * Files: token_vocab.c (the trie), token_mask.c (the cache, its walk, masks), token_region.c
 * (regions, skips), token_chain.c (bounded chains); shared internals: token_mask_internal.h.
 */
#ifndef LIGHTLLM_GRAMMAR_TOKEN_MASK_H
#define LIGHTLLM_GRAMMAR_TOKEN_MASK_H

#include <stdint.h>

#include "engine/detokenizer.h"
#include "grammar/dpda.h"

typedef struct token_vocab token_vocab;

/* Builds the trie from v (which must outlive the token_vocab); eos_ids: tokens that end the
 * output.  Errors: STATUS_INVALID_ARG for an EOS id outside the vocabulary. */
status_t token_vocab_create(const detok_vocab *v, const int32_t *eos_ids, int32_t num_eos, token_vocab **out);
void token_vocab_free(token_vocab *tv);
int32_t token_vocab_size(const token_vocab *tv);
int32_t token_vocab_mask_words(const token_vocab *tv);   /* ceil(size / 32) */
int token_vocab_is_eos(const token_vocab *tv, int32_t token);
int32_t token_vocab_num_nodes(const token_vocab *tv);

typedef struct token_mask_table token_mask_table;

token_mask_table *token_mask_table_create(const dpda *d, const token_vocab *tv);
void token_mask_table_free(token_mask_table *t);
/* Cache statistics: entries and bytes held. */
int64_t token_mask_table_num_entries(const token_mask_table *t);
int64_t token_mask_table_bytes(const token_mask_table *t);
/* Trie subtrees settled from a region's walk instead of walked (see "Skips" above). */
int64_t token_mask_table_num_skips(const token_mask_table *t);
/* Classifications of bounded-chain positions answered from their loop's region (see "Bounded
 * chains" above) instead of a trie walk. */
int64_t token_mask_table_num_chains(const token_mask_table *t);
/* Of those, the ones whose tokens leaving the chain were stepped only from where they leave it
 * (the chain knows the real state at every count; token_chain_walk in token_mask.c). */
int64_t token_mask_table_num_chain_groups(const token_mask_table *t);
/* Masks computed on the real stack because a counter was near its bound (token_mask_fill). */
int64_t token_mask_table_num_near_bound(const token_mask_table *t);

/* mask[token_vocab_mask_words] for the matcher's current state; returns the number of allowed
 * tokens.  The matcher is unchanged (its arena is used as scratch above num_nodes). */
int32_t token_mask_fill(token_mask_table *t, dpda_matcher *m, uint32_t *mask);
/* Reference: every token's bytes fed to the matcher one by one (slow; for tests). */
int32_t token_mask_fill_brute(const token_vocab *tv, dpda_matcher *m, uint32_t *mask);
/* Advances by one token's bytes: 1 accepted, 0 rejected (matcher unchanged).  An EOS id is
 * accepted (without moving) iff the matcher is accepting; special/empty tokens are rejected.
 * After an accepted token the matcher's arena is compacted when due (dpda_matcher_maybe_compact). */
int token_mask_advance_token(const token_vocab *tv, dpda_matcher *m, int32_t token);

#endif
