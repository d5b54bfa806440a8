/*
 * Keeps events whose `level` is `error` (or the configured `level`).
 *
 * Freestanding C: no libc and no WASI, so the module needs no adapter and
 * `wasm-tools component new` wraps it as it is. The canonical-ABI glue for
 * the two exports of the `filter` world is written out below; memory is a
 * bump arena reset after every call, as nothing lives between calls except
 * the configured level, which `init` copies.
 */
#include <stddef.h>
#include <stdint.h>

/* ---- memory: a bump arena over the heap, grown in 64 KiB pages ---- */

extern unsigned char __heap_base;
static uintptr_t arena_top;

static void *bump(size_t size, size_t align) {
    if (!arena_top) arena_top = (uintptr_t)&__heap_base;
    uintptr_t p = (arena_top + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t end = p + size;
    size_t have = __builtin_wasm_memory_size(0) * 65536;
    if (end > have) {
        size_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) __builtin_trap();
    }
    arena_top = end;
    return (void *)p;
}

static void arena_reset(void) { arena_top = (uintptr_t)&__heap_base; }

__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    void *p = bump(new_size, align);
    if (old) __builtin_memcpy(p, old, old_size < new_size ? old_size : new_size);
    return p;
}

/* ---- the layout (wit/LAYOUT.md): little-endian, unaligned ---- */

static uint32_t u16_at(const uint8_t *p) { return p[0] | p[1] << 8; }
static uint32_t u32_at(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* Bytes taken by the value at p (tag included), or 0 if malformed. */
static size_t value_size(const uint8_t *p, const uint8_t *end) {
    if (p >= end) return 0;
    switch (p[0]) {
    case 0: case 1: case 2: return 1;
    case 3: case 4: return 9;
    case 5: case 6: case 7: case 8:
        if (end - p < 5) return 0;
        return 5 + (size_t)u32_at(p + 1);
    default: return 0;
    }
}

static char level[64] = "error";
static size_t level_len = 5;

static int eq(const uint8_t *a, size_t an, const char *b, size_t bn) {
    if (an != bn) return 0;
    for (size_t i = 0; i < an; i++)
        if (a[i] != (uint8_t)b[i]) return 0;
    return 1;
}

/* 1 keep, 0 drop, -1 malformed. */
static int keep(const uint8_t *ev, const uint8_t *end) {
    if (end - ev < 13 || ev[0] != 0) return 0; /* metrics have no level */
    uint32_t count = u32_at(ev + 9);
    const uint8_t *p = ev + 13;
    for (uint32_t i = 0; i < count; i++) {
        if (end - p < 2) return -1;
        size_t kn = u16_at(p);
        const uint8_t *k = p + 2, *v = k + kn;
        size_t vn = value_size(v, end);
        if (vn == 0 || v + vn > end) return -1;
        if (eq(k, kn, "level", 5)) return v[0] == 5 && eq(v + 5, vn - 5, level, level_len);
        p = v + vn;
    }
    return 0;
}

/* ---- exports of the `filter` world ---- */

typedef struct { const char *ptr; size_t len; } str_t;
typedef struct { str_t key, value; } pair_t;
typedef struct { uint32_t index; str_t message; } event_error_t;
/* result<_, string>: tag byte, string at offset 4. */
typedef struct { uint8_t is_err; str_t err; } init_ret_t;
/* result<verdict, string>: tag byte, payload at offset 4. */
typedef struct {
    uint8_t is_err;
    union {
        struct { uint8_t *keep; size_t keep_len; event_error_t *errors; size_t errors_len; } ok;
        str_t err;
    } u;
} filter_ret_t;

static str_t lit(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return (str_t){s, n};
}

__attribute__((export_name("init")))
init_ret_t *init(pair_t *config, size_t n) {
    init_ret_t *ret = bump(sizeof *ret, 4);
    ret->is_err = 0;
    for (size_t i = 0; i < n; i++) {
        if (eq((const uint8_t *)config[i].key.ptr, config[i].key.len, "level", 5)
            && config[i].value.len < sizeof level) {
            __builtin_memcpy(level, config[i].value.ptr, config[i].value.len);
            level_len = config[i].value.len;
        } else {
            ret->is_err = 1;
            ret->err = lit("unknown setting (known: level)");
        }
    }
    return ret;
}

__attribute__((export_name("filter")))
filter_ret_t *filter(const uint8_t *batch, size_t len) {
    filter_ret_t *ret = bump(sizeof *ret, 4);
    const uint8_t *end = batch + len;
    if (len < 12 || !eq(batch, 4, "WEIR", 4) || u16_at(batch + 4) != 1) {
        ret->is_err = 1;
        ret->u.err = lit("not a weir batch of layout version 1");
        return ret;
    }
    uint32_t count = u32_at(batch + 8);
    uint8_t *bits = bump((count + 7) / 8, 1);
    __builtin_memset(bits, 0, (count + 7) / 8);
    const uint8_t *p = batch + 12;
    for (uint32_t i = 0; i < count; i++) {
        if (end - p < 4 || (size_t)(end - p - 4) < u32_at(p)) {
            ret->is_err = 1;
            ret->u.err = lit("truncated batch");
            return ret;
        }
        const uint8_t *ev = p + 4, *ev_end = ev + u32_at(p);
        if (keep(ev, ev_end) == 1) bits[i / 8] |= 1 << (i % 8);
        p = ev_end;
    }
    ret->is_err = 0;
    ret->u.ok.keep = bits;
    ret->u.ok.keep_len = (count + 7) / 8;
    ret->u.ok.errors = 0;
    ret->u.ok.errors_len = 0;
    return ret;
}

/* The host has copied the results out: everything can go. */
__attribute__((export_name("cabi_post_init"))) void cabi_post_init(void *r) { (void)r; arena_reset(); }
__attribute__((export_name("cabi_post_filter"))) void cabi_post_filter(void *r) { (void)r; arena_reset(); }
