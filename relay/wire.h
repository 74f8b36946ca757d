/*
 * Protobuf wire reading and writing shared by the native modules: varints, skipping a field,
 * a table of wanted attribute keys, an output buffer. Static functions: each module that includes
 * this gets its own copy, so the modules stay independent shared objects.
 */
#ifndef RELAY_WIRE_H
#define RELAY_WIRE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

static int read_varint(cursor *c, uint64_t *out) {
    uint64_t value = 0;
    int shift = 0;
    while (c->p < c->end && shift < 64) {
        uint8_t byte = *c->p++;
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
        shift += 7;
    }
    return -1;
}

/* Skips one field whose tag was just read; -1 on malformed input. Groups (wire types 3 and 4,
 * deprecated but accepted by the protobuf parser) are skipped to their matching end, nested at
 * most MAX_GROUP_DEPTH deep, as the parser's own recursion limit bounds them. */
#define MAX_GROUP_DEPTH 64

static int skip_group(cursor *c, uint64_t field, int depth);

static int skip_field_at(cursor *c, uint64_t tag, int depth) {
    uint64_t n;
    switch ((int)(tag & 7)) {
    case 0:
        return read_varint(c, &n);
    case 1:
        if (c->end - c->p < 8) return -1;
        c->p += 8;
        return 0;
    case 2:
        if (read_varint(c, &n) < 0 || (uint64_t)(c->end - c->p) < n) return -1;
        c->p += n;
        return 0;
    case 3:
        return skip_group(c, tag >> 3, depth + 1);
    case 5:
        if (c->end - c->p < 4) return -1;
        c->p += 4;
        return 0;
    default: /* an end-group tag with no group open, or wire types 6 and 7 */
        return -1;
    }
}

static int skip_group(cursor *c, uint64_t field, int depth) {
    if (depth > MAX_GROUP_DEPTH) return -1;
    while (c->p < c->end) {
        uint64_t tag;
        if (read_varint(c, &tag) < 0) return -1;
        if ((tag & 7) == 4) return tag >> 3 == field ? 0 : -1;
        if (skip_field_at(c, tag, depth) < 0) return -1;
    }
    return -1; /* the group never ended */
}

static int skip_field(cursor *c, uint64_t tag) { return skip_field_at(c, tag, 0); }

/*
 * The wanted keys as a small open-addressing table of UTF-8 bytes -> slot, built
 * once per call, so looking up an attribute's key makes no Python object.
 */
#define MAX_KEYS 127
#define FILTER_BIT(key, n) ((uint64_t)1 << (((key)[(n) - 1] + (key)[(n) / 2]) & 63))
#define TABLE_SIZE 512 /* a power of two, well over 2 x MAX_KEYS keys */
/* An attribute list's present keys as a 128-bit mask of two words. */
#define HAS(m, i) ((m)[(i) >> 6] >> ((i) & 63) & 1)
#define SET(m, i) ((m)[(i) >> 6] |= (uint64_t)1 << ((i) & 63))

typedef struct {
    const char *key;
    Py_ssize_t len;
    int slot;
} table_entry;

typedef struct {
    table_entry entries[TABLE_SIZE];
    /* For keys of n bytes (n < 64), bit FILTER_BIT(key, n) of lengths[n] is set when some wanted key
     * has those bytes there: most attribute keys are skipped on it without being hashed. */
    uint64_t lengths[64];
    int long_keys;
    int empty_key;
} key_table;

static uint32_t hash_bytes(const uint8_t *p, Py_ssize_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static int build_table(PyObject *index, Py_ssize_t size, key_table *keys) {
    memset(keys, 0, sizeof(key_table));
    table_entry *table = keys->entries;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(index, &pos, &key, &value)) {
        Py_ssize_t len, slot = PyLong_AsSsize_t(value);
        if (slot == -1 && PyErr_Occurred()) return -1;
        const char *utf8 = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &len) : NULL;
        if (utf8 == NULL || slot < 0 || slot >= size) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "index maps str keys to slots below size");
            return -1;
        }
        if (len == 0) keys->empty_key = 1;
        else if (len < 64) keys->lengths[len] |= FILTER_BIT((const uint8_t *)utf8, len);
        else keys->long_keys = 1;
        uint32_t i = hash_bytes((const uint8_t *)utf8, len) & (TABLE_SIZE - 1);
        while (table[i].key != NULL) i = (i + 1) & (TABLE_SIZE - 1);
        table[i].key = utf8;
        table[i].len = len;
        table[i].slot = (int)slot;
    }
    return 0;
}

static int lookup(const key_table *keys, const uint8_t *key, Py_ssize_t len) {
    if (len == 0) {
        if (!keys->empty_key) return -1;
    } else if (len < 64 ? !(keys->lengths[len] & FILTER_BIT(key, len)) : !keys->long_keys) {
        return -1;
    }
    const table_entry *table = keys->entries;
    uint32_t i = hash_bytes(key, len) & (TABLE_SIZE - 1);
    while (table[i].key != NULL) {
        if (table[i].len == len && memcmp(table[i].key, key, (size_t)len) == 0) return table[i].slot;
        i = (i + 1) & (TABLE_SIZE - 1);
    }
    return -1;
}

/* Where a wanted key's value is, by slot. */
typedef struct {
    const uint8_t *value;
    Py_ssize_t len;
} slot_ref;

/* Reads one KeyValue; if its key is wanted and not seen yet in this list, marks its slot in mask
 * and notes where its value is. The slot, -1 for a key not wanted (or seen), -2 when malformed. */
static int slot_of_attribute(const uint8_t *p, Py_ssize_t len, const key_table *table, uint64_t mask[2],
                             slot_ref *refs) {
    cursor kv = {p, p + len};
    const uint8_t *key = NULL, *value = NULL;
    uint64_t key_len = 0, value_len = 0;
    while (kv.p < kv.end) {
        uint64_t tag, m;
        if (read_varint(&kv, &tag) < 0) return -2;
        if ((tag & 7) == 2 && ((tag >> 3) == 1 || (tag >> 3) == 2)) {
            if (read_varint(&kv, &m) < 0 || (uint64_t)(kv.end - kv.p) < m) return -2;
            if ((tag >> 3) == 1) { key = kv.p; key_len = m; }
            else { value = kv.p; value_len = m; }
            kv.p += m;
        } else if (skip_field(&kv, tag) < 0) {
            return -2;
        }
    }
    if (key == NULL) return -1;
    int slot = lookup(table, key, (Py_ssize_t)key_len);
    if (slot < 0 || HAS(mask, slot)) return -1;
    SET(mask, slot);
    refs[slot].value = value;
    refs[slot].len = value ? (Py_ssize_t)value_len : 0;
    return slot;
}

/* The raw values of the present slots below n, each as (slot, varint length, AnyValue bytes), in
 * slot order: one hashable value for a whole attribute list's wanted keys. */
static PyObject *signature_of(const slot_ref *refs, const uint64_t mask[2], Py_ssize_t n) {
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (HAS(mask, i)) size += 1 + 5 + refs[i].len;
    PyObject *signature = PyBytes_FromStringAndSize(NULL, size);
    if (signature == NULL || size == 0) return signature;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(signature), *start = out;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!HAS(mask, i)) continue;
        *out++ = (uint8_t)i;
        uint64_t l = (uint64_t)refs[i].len;
        do { /* length as a varint, so entries cannot run into each other */
            uint8_t byte = l & 0x7F;
            l >>= 7;
            *out++ = byte | (l ? 0x80 : 0);
        } while (l);
        if (refs[i].len) memcpy(out, refs[i].value, (size_t)refs[i].len);
        out += refs[i].len;
    }
    if (_PyBytes_Resize(&signature, out - start) < 0) return NULL;
    return signature;
}

/* Calls back for each length-delimited field ``field`` found directly in [p, end). */
static int each_field(const uint8_t *p, const uint8_t *end, int field,
                      int (*visit)(const uint8_t *, Py_ssize_t, void *), void *state) {
    cursor c = {p, end};
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return -2;
        if (tag == (((uint64_t)field << 3) | 2)) {
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return -2;
            int rc = visit(c.p, (Py_ssize_t)n, state);
            if (rc < 0) return rc;
            c.p += n;
        } else if (skip_field(&c, tag) < 0) {
            return -2;
        }
    }
    return 0;
}

/* An output buffer: growing, or ``fixed`` (memory it does not own, sized in advance). */
typedef struct {
    uint8_t *data;
    Py_ssize_t len, cap;
    int fixed;
} buffer_t;

static int put(buffer_t *b, const void *p, Py_ssize_t n) {
    if (b->len + n > b->cap) {
        if (b->fixed) {
            PyErr_SetString(PyExc_SystemError, "wire writer: more bytes than were sized");
            return -1;
        }
        Py_ssize_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *grown = PyMem_Realloc(b->data, (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

static int put_varint(buffer_t *b, uint64_t v) {
    uint8_t tmp[10];
    int n = 0;
    do {
        uint8_t byte = v & 0x7F;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    return put(b, tmp, n);
}

#endif
