/*
 * The store's per-row work in C: parameter tuples from usage records, multi-row statement
 * parameters, and the daily-rollup sums of written rows (collector/core/store.py).
 *
 * Why C: a bulk write on SQLite spends about as long in SQLite as the driver's own
 * executemany does; everything our write adds (reading ~30 fields of each record, its key,
 * flattening rows for multi-row VALUES, summing the rollup) ran at ~4.5 us a row in Python
 * against a budget of ~2 us (store benchmark). Each function here returns exactly what the
 * Python code in store.py returns for the same input; that code stays as the fallback when
 * this module is not built, and tests compare the two on generated records.
 *
 * Records are slotted dataclasses: fields are read straight from their slot offsets, taken
 * from the type's member descriptors, instead of a generic attribute lookup per field.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define MAX_KEY_PARTS 32

/* Slot offsets of `names` on `type`; -1 for a name that is not a plain object slot. */
static int
slot_offsets(PyObject *type, PyObject *names, Py_ssize_t *out)
{
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *descr = PyObject_GetAttr(type, PyTuple_GET_ITEM(names, i));
        if (descr == NULL) {
            return -1;
        }
        out[i] = -1;
        if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == T_OBJECT_EX) {
                out[i] = member->offset;
            }
        }
        Py_DECREF(descr);
        if (out[i] < 0) {
            PyErr_Format(PyExc_TypeError, "%R is not a slot of %R", PyTuple_GET_ITEM(names, i), type);
            return -1;
        }
    }
    return 0;
}

/* A borrowed reference to a slot's value, or NULL with AttributeError if it is unset. */
static inline PyObject *
slot(PyObject *obj, Py_ssize_t offset, PyObject *name)
{
    PyObject *value = *(PyObject **)((char *)obj + offset);
    if (value == NULL) {
        PyErr_SetObject(PyExc_AttributeError, name);
    }
    return value;
}

typedef struct {
    const char *data;
    Py_ssize_t size;
    char small[24];   /* an integer's digits */
    PyObject *owned;  /* a str() made for a value of another type */
} KeyPart;

/* `v` in decimal, as str(int) writes it; returns the length (at most 20). */
static Py_ssize_t
format_int(long long v, char *out)
{
    char digits[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    Py_ssize_t len = 0;
    if (v < 0) {
        out[len++] = '-';
    }
    while (n) {
        out[len++] = digits[--n];
    }
    return len;
}

/* One key field as the f-string in UsageRecord.record_key writes it (UTF-8). */
static int
key_part(PyObject *value, int flag, KeyPart *part)
{
    part->owned = NULL;
    if (flag) {  /* '1' if value else '0' */
        int truth = PyObject_IsTrue(value);
        if (truth < 0) {
            return -1;
        }
        part->small[0] = truth ? '1' : '0';
        part->data = part->small;
        part->size = 1;
        return 0;
    }
    if (PyUnicode_CheckExact(value)) {
        part->data = PyUnicode_AsUTF8AndSize(value, &part->size);
        return part->data == NULL ? -1 : 0;
    }
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow) {
            if (v == -1 && PyErr_Occurred()) {
                return -1;
            }
            part->size = format_int(v, part->small);
            part->data = part->small;
            return 0;
        }
    }
    part->owned = PyObject_Str(value);  /* what format(value, "") gives for these types */
    if (part->owned == NULL) {
        return -1;
    }
    part->data = PyUnicode_AsUTF8AndSize(part->owned, &part->size);
    return part->data == NULL ? -1 : 0;
}

/*
 * BLAKE2b with a 16-byte digest and no key, as RFC 7693 specifies it (section 3 and its
 * appendix C reference code): the natural key hash of hashlib.blake2b(data, digest_size=16),
 * without a hash object, a keyword parse and a method call per row. A test compares it with
 * hashlib on generated inputs of every length around the 128-byte block.
 */
static const uint64_t blake2b_iv[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL, 0xA54FF53A5F1D36F1ULL,
    0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL, 0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL,
};

static const uint8_t blake2b_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define B2B_G(a, b, c, d, x, y)            \
    do {                                   \
        v[a] = v[a] + v[b] + (x);          \
        v[d] = ROTR64(v[d] ^ v[a], 32);    \
        v[c] = v[c] + v[d];                \
        v[b] = ROTR64(v[b] ^ v[c], 24);    \
        v[a] = v[a] + v[b] + (y);          \
        v[d] = ROTR64(v[d] ^ v[a], 16);    \
        v[c] = v[c] + v[d];                \
        v[b] = ROTR64(v[b] ^ v[c], 63);    \
    } while (0)

static void
blake2b_compress(uint64_t h[8], const uint8_t block[128], uint64_t counter, int last)
{
    uint64_t v[16], m[16];
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = blake2b_iv[i];
    }
    v[12] ^= counter;  /* the counter's high word stays 0: inputs are far below 2**64 bytes */
    if (last) {
        v[14] = ~v[14];
    }
    for (int i = 0; i < 16; i++) {
        const uint8_t *p = block + 8 * i;
        m[i] = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
               (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
    }
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = blake2b_sigma[r];
        B2B_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        B2B_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        B2B_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        B2B_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        B2B_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        B2B_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        B2B_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        B2B_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) {
        h[i] ^= v[i] ^ v[i + 8];
    }
}

static void
blake2b_16(const uint8_t *in, size_t len, uint8_t out[16])
{
    uint64_t h[8];
    uint8_t block[128];
    uint64_t counter = 0;
    memcpy(h, blake2b_iv, sizeof h);
    h[0] ^= 0x01010000ULL ^ 16;  /* depth 1, fanout 1, no key, a 16-byte digest */
    while (len > 128) {
        counter += 128;
        blake2b_compress(h, in, counter, 0);
        in += 128;
        len -= 128;
    }
    memset(block, 0, sizeof block);
    memcpy(block, in, len);
    counter += len;
    blake2b_compress(h, block, counter, 1);
    for (int i = 0; i < 16; i++) {
        out[i] = (uint8_t)(h[i / 8] >> (8 * (i % 8)));
    }
}

PyDoc_STRVAR(blake2b_16_doc,
"blake2b_16(data: bytes) -> bytes\n\n"
"hashlib.blake2b(data, digest_size=16).digest(), as the row builder computes keys.");

static PyObject *
py_blake2b_16(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    uint8_t digest[16];
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    blake2b_16(view.buf, (size_t)view.len, digest);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)digest, 16);
}

PyDoc_STRVAR(blake2b_16_column_doc,
"blake2b_16_column(offsets, data, start, n, wide) -> list[bytes]\n\n"
"blake2b_16 of each of `n` values of an Arrow binary array, from its offsets buffer (int32, or\n"
"int64 if `wide`) and data buffer, starting at value `start` (the array's offset): the keys of a\n"
"columnar import without a bytes object per joined key.");

static PyObject *
blake2b_16_column(PyObject *self, PyObject *args)
{
    Py_buffer offsets, data;
    Py_ssize_t start, n;
    int wide;
    if (!PyArg_ParseTuple(args, "y*y*nnp:blake2b_16_column", &offsets, &data, &start, &n, &wide)) {
        return NULL;
    }
    PyObject *result = NULL;
    uint8_t *digests = NULL;
    int bad = 0;
    Py_ssize_t width = wide ? 8 : 4;
    if (start < 0 || n < 0 || (start + n + 1) * width > offsets.len) {
        PyErr_SetString(PyExc_ValueError, "the offsets buffer is shorter than the values named");
        goto done;
    }
    digests = PyMem_RawMalloc((size_t)(n ? n : 1) * 16);
    if (digests == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Only the buffers are read: the hashing runs without the GIL (a columnar import reads ahead
     * in another thread). */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        long long lo, hi;
        if (wide) {
            int64_t pair[2];
            memcpy(pair, (const char *)offsets.buf + (start + i) * 8, sizeof pair);
            lo = pair[0], hi = pair[1];
        } else {
            int32_t pair[2];
            memcpy(pair, (const char *)offsets.buf + (start + i) * 4, sizeof pair);
            lo = pair[0], hi = pair[1];
        }
        if (lo < 0 || hi < lo || hi > data.len) {
            bad = 1;
        } else {
            blake2b_16((const uint8_t *)data.buf + lo, (size_t)(hi - lo), digests + 16 * i);
        }
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "an offset points outside the data buffer");
        goto done;
    }
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyBytes_FromStringAndSize((const char *)digests + 16 * i, 16);
        if (key == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, key);
    }
done:
    PyMem_RawFree(digests);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return result;
}

#define KEY_STACK 2048

/* blake2b(<fields joined by 0x1f, UTF-8>, digest_size=16).digest() */
static PyObject *
record_key(PyObject *rec, Py_ssize_t nkey, const Py_ssize_t *offsets, const int *flags, PyObject *names)
{
    KeyPart parts[MAX_KEY_PARTS];
    char stack[KEY_STACK];
    char *joined = stack;
    Py_ssize_t total = nkey > 0 ? nkey - 1 : 0;
    Py_ssize_t made = 0;
    PyObject *digest = NULL;
    for (; made < nkey; made++) {
        PyObject *value = slot(rec, offsets[made], PyTuple_GET_ITEM(names, made));
        if (value == NULL || key_part(value, flags[made], &parts[made]) < 0) {
            goto done;
        }
        total += parts[made].size;
    }
    if (total > KEY_STACK && (joined = PyMem_Malloc(total)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    char *out = joined;
    for (Py_ssize_t i = 0; i < nkey; i++) {
        if (i) {
            *out++ = '\x1f';
        }
        memcpy(out, parts[i].data, parts[i].size);
        out += parts[i].size;
    }
    uint8_t hash[16];
    blake2b_16((const uint8_t *)joined, (size_t)total, hash);
    digest = PyBytes_FromStringAndSize((const char *)hash, 16);
done:
    if (joined != stack) {
        PyMem_Free(joined);
    }
    for (Py_ssize_t i = 0; i < made; i++) {
        Py_XDECREF(parts[i].owned);
    }
    return digest;
}

PyDoc_STRVAR(rows_doc,
"rows(records, type, fields, key_fields, key_cache, columns, constants, touched=None, slice_fields=None,\n"
"     day_seconds=86400) -> list[tuple]\n\n"
"One tuple per record: the record's `fields`, its key, the record's value in each of `columns`\n"
"(lists as long as `records`), then `constants`. The key is the record's `key_cache` slot if it\n"
"is not None, else BLAKE2b-128 of `key_fields` joined by 0x1f (a field named '?name' is written\n"
"as '1' or '0' by its truth), as UsageRecord.record_key computes it. With `touched` (a set),\n"
"each record's (day, *slice) is added to it: `slice_fields` names the bucket start in epoch\n"
"seconds, floored to a multiple of `day_seconds`, and the four slice fields.");

#define SLICE_CACHE 64

typedef struct {
    long long day;
    PyObject *parts[4];
} SliceSeen;

/* Add (day, provider, account, source, kind) of a record to `touched` unless this call has added
 * the same objects already (a small cache by identity; a miss only costs a set insertion). */
static int
touch(PyObject *touched, SliceSeen *seen, long long start, PyObject *const parts[4], long long day_seconds)
{
    long long rem = start % day_seconds;
    long long day = start - (rem < 0 ? rem + day_seconds : rem);
    size_t h = (size_t)day * 31u;
    for (int i = 0; i < 4; i++) {
        h = (h ^ ((size_t)parts[i] >> 4)) * 1000003u;
    }
    SliceSeen *slot = &seen[h % SLICE_CACHE];
    if (slot->parts[0] == parts[0] && slot->parts[1] == parts[1] && slot->parts[2] == parts[2] &&
        slot->parts[3] == parts[3] && slot->day == day) {
        return 0;
    }
    PyObject *item = Py_BuildValue("(LOOOO)", day, parts[0], parts[1], parts[2], parts[3]);
    if (item == NULL) {
        return -1;
    }
    int failed = PySet_Add(touched, item);
    Py_DECREF(item);
    if (failed < 0) {
        return -1;
    }
    slot->day = day;
    memcpy(slot->parts, parts, sizeof slot->parts);
    return 0;
}

static PyObject *
rows(PyObject *self, PyObject *args)
{
    PyObject *records, *type, *fields, *key_fields, *key_cache, *columns, *constants;
    PyObject *touched = Py_None, *slice_fields = NULL;
    long long day_seconds = 86400;
    if (!PyArg_ParseTuple(args, "O!OO!O!UO!O!|OO!L:rows", &PyList_Type, &records, &type, &PyTuple_Type, &fields,
                          &PyTuple_Type, &key_fields, &key_cache, &PyTuple_Type, &columns, &PyTuple_Type,
                          &constants, &touched, &PyTuple_Type, &slice_fields, &day_seconds)) {
        return NULL;
    }
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "type must be a type");
        return NULL;
    }
    if (touched != Py_None && (!PySet_Check(touched) || slice_fields == NULL ||
                               PyTuple_GET_SIZE(slice_fields) != 5 || day_seconds < 1)) {
        PyErr_SetString(PyExc_TypeError, "touched needs a set, the five slice fields and day_seconds");
        return NULL;
    }
    Py_ssize_t slice_at[5];
    SliceSeen seen[SLICE_CACHE];
    memset(seen, 0, sizeof seen);
    if (touched != Py_None && slot_offsets(type, slice_fields, slice_at) < 0) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records);
    Py_ssize_t nfields = PyTuple_GET_SIZE(fields), nkey = PyTuple_GET_SIZE(key_fields);
    Py_ssize_t ncols = PyTuple_GET_SIZE(columns), nconst = PyTuple_GET_SIZE(constants);
    Py_ssize_t width = nfields + 1 + ncols + nconst;
    if (nkey > MAX_KEY_PARTS) {
        PyErr_SetString(PyExc_ValueError, "too many key fields");
        return NULL;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *col = PyTuple_GET_ITEM(columns, c);
        if (!PyList_Check(col) || PyList_GET_SIZE(col) != n) {
            PyErr_SetString(PyExc_ValueError, "each column must be a list with a value per record");
            return NULL;
        }
    }
    Py_ssize_t *offsets = PyMem_Malloc(sizeof(Py_ssize_t) * (nfields + nkey + 1));
    int *flags = PyMem_Malloc(sizeof(int) * (nkey + 1));
    PyObject *key_names = PyTuple_New(nkey);
    PyObject *result = NULL;
    if (offsets == NULL || flags == NULL || key_names == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < nkey; k++) {
        PyObject *name = PyTuple_GET_ITEM(key_fields, k);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "key fields must be names");
            goto done;
        }
        flags[k] = PyUnicode_GET_LENGTH(name) > 0 && PyUnicode_READ_CHAR(name, 0) == '?';
        PyObject *bare = flags[k] ? PyUnicode_Substring(name, 1, PyUnicode_GET_LENGTH(name)) : Py_NewRef(name);
        if (bare == NULL) {
            goto done;
        }
        PyTuple_SET_ITEM(key_names, k, bare);
    }
    PyObject *cache_names = PyTuple_Pack(1, key_cache);
    if (cache_names == NULL) {
        goto done;
    }
    int failed = slot_offsets(type, fields, offsets) < 0 || slot_offsets(type, key_names, offsets + nfields) < 0 ||
                 slot_offsets(type, cache_names, offsets + nfields + nkey) < 0;
    Py_DECREF(cache_names);
    if (failed) {
        goto done;
    }
    Py_ssize_t cache_at = offsets[nfields + nkey];
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *rec = PyList_GET_ITEM(records, r);
        if (!PyObject_TypeCheck(rec, (PyTypeObject *)type)) {
            PyErr_Format(PyExc_TypeError, "expected %R, got %R", type, Py_TYPE(rec));
            goto fail;
        }
        PyObject *row = PyTuple_New(width);
        if (row == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(result, r, row);
        for (Py_ssize_t f = 0; f < nfields; f++) {
            PyObject *value = slot(rec, offsets[f], PyTuple_GET_ITEM(fields, f));
            if (value == NULL) {
                goto fail;
            }
            PyTuple_SET_ITEM(row, f, Py_NewRef(value));
        }
        PyObject *key = *(PyObject **)((char *)rec + cache_at);
        if (key != NULL && key != Py_None) {
            Py_INCREF(key);
        } else {
            key = record_key(rec, nkey, offsets + nfields, flags, key_names);
            if (key == NULL) {
                goto fail;
            }
        }
        PyTuple_SET_ITEM(row, nfields, key);
        for (Py_ssize_t c = 0; c < ncols; c++) {
            PyTuple_SET_ITEM(row, nfields + 1 + c, Py_NewRef(PyList_GET_ITEM(PyTuple_GET_ITEM(columns, c), r)));
        }
        for (Py_ssize_t c = 0; c < nconst; c++) {
            PyTuple_SET_ITEM(row, nfields + 1 + ncols + c, Py_NewRef(PyTuple_GET_ITEM(constants, c)));
        }
        if (touched != Py_None) {
            PyObject *parts[5];
            for (int i = 0; i < 5; i++) {
                if ((parts[i] = slot(rec, slice_at[i], PyTuple_GET_ITEM(slice_fields, i))) == NULL) {
                    goto fail;
                }
            }
            long long start = PyLong_AsLongLong(parts[0]);
            if ((start == -1 && PyErr_Occurred()) || touch(touched, seen, start, parts + 1, day_seconds) < 0) {
                goto fail;
            }
        }
    }
    goto done;
fail:
    Py_CLEAR(result);  /* rows not yet made are NULL items, which list dealloc skips */
done:
    PyMem_Free(offsets);
    PyMem_Free(flags);
    Py_XDECREF(key_names);
    return result;
}

PyDoc_STRVAR(flatten_doc,
"flatten(rows, per, keep=None, lead=(), blobs=()) -> list[list]\n\n"
"The parameters of each full run of `per` rows, one list per run, in order (a multi-row VALUES\n"
"statement's parameters); the rows after the last full run are left to the caller. With `keep`\n"
"(a tuple of positions) only those items of each row are taken, and every run starts with the\n"
"items of `lead`: the values a statement binds once for all its rows. A bytes item at a position\n"
"in `blobs` is copied into a bytearray: Python's sqlite3 binds a bytearray straight away, while\n"
"bytes (like None) first go through its adapter lookup, which fails by raising and clearing an\n"
"AttributeError, about a microsecond each.");

static PyObject *
flatten(PyObject *self, PyObject *args)
{
    PyObject *rows, *keep = Py_None, *lead = NULL, *blobs = NULL;
    Py_ssize_t per;
    if (!PyArg_ParseTuple(args, "O!n|OO!O!:flatten", &PyList_Type, &rows, &per, &keep, &PyTuple_Type, &lead,
                          &PyTuple_Type, &blobs)) {
        return NULL;
    }
    /* Blob positions as a bitmap over the row (positions past 63 are refused: rows are narrower). */
    unsigned long long blob_bits = 0;
    for (Py_ssize_t k = 0; blobs != NULL && k < PyTuple_GET_SIZE(blobs); k++) {
        Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(blobs, k));
        if (at < 0 || at > 63) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "blob positions must be within 0..63");
            }
            return NULL;
        }
        blob_bits |= 1ULL << at;
    }
    if (per < 1) {
        PyErr_SetString(PyExc_ValueError, "per must be at least 1");
        return NULL;
    }
    if (keep != Py_None && !PyTuple_Check(keep)) {
        PyErr_SetString(PyExc_TypeError, "keep must be a tuple of positions or None");
        return NULL;
    }
    Py_ssize_t nkeep = keep == Py_None ? -1 : PyTuple_GET_SIZE(keep);
    Py_ssize_t nlead = lead == NULL ? 0 : PyTuple_GET_SIZE(lead);
    Py_ssize_t *at_keep = NULL;
    if (nkeep >= 0) {
        at_keep = PyMem_Malloc(sizeof(Py_ssize_t) * (nkeep ? nkeep : 1));
        if (at_keep == NULL) {
            return PyErr_NoMemory();
        }
        for (Py_ssize_t k = 0; k < nkeep; k++) {
            at_keep[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(keep, k));
            if (at_keep[k] < 0) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_ValueError, "keep's positions must not be negative");
                }
                PyMem_Free(at_keep);
                return NULL;
            }
        }
    }
    Py_ssize_t runs = PyList_GET_SIZE(rows) / per;
    PyObject *result = PyList_New(runs);
    if (result == NULL) {
        PyMem_Free(at_keep);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < runs; i++) {
        Py_ssize_t total = nlead;
        for (Py_ssize_t j = 0; j < per; j++) {
            PyObject *row = PyList_GET_ITEM(rows, i * per + j);
            if (!PyTuple_Check(row)) {
                PyErr_SetString(PyExc_TypeError, "rows must be tuples");
                goto error;
            }
            for (Py_ssize_t k = 0; k < nkeep; k++) {
                if (at_keep[k] >= PyTuple_GET_SIZE(row)) {
                    PyErr_SetString(PyExc_IndexError, "a kept position is past the end of a row");
                    goto error;
                }
            }
            total += nkeep >= 0 ? nkeep : PyTuple_GET_SIZE(row);
        }
        PyObject *flat = PyList_New(total);
        if (flat == NULL) {
            goto error;
        }
        PyList_SET_ITEM(result, i, flat);
        Py_ssize_t at = 0;
        for (Py_ssize_t k = 0; k < nlead; k++) {
            PyList_SET_ITEM(flat, at++, Py_NewRef(PyTuple_GET_ITEM(lead, k)));
        }
        for (Py_ssize_t j = 0; j < per; j++) {
            PyObject *row = PyList_GET_ITEM(rows, i * per + j);
            Py_ssize_t width = nkeep >= 0 ? nkeep : PyTuple_GET_SIZE(row);
            for (Py_ssize_t k = 0; k < width; k++) {
                Py_ssize_t from = nkeep >= 0 ? at_keep[k] : k;
                PyObject *item = PyTuple_GET_ITEM(row, from);
                if (from < 64 && (blob_bits >> from) & 1 && PyBytes_CheckExact(item)) {
                    item = PyByteArray_FromStringAndSize(PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item));
                    if (item == NULL) {
                        goto error;
                    }
                } else {
                    Py_INCREF(item);
                }
                PyList_SET_ITEM(flat, at++, item);
            }
        }
    }
    PyMem_Free(at_keep);
    return result;
error:
    PyMem_Free(at_keep);
    Py_DECREF(result);
    return NULL;
}

PyDoc_STRVAR(shared_columns_doc,
"shared_columns(rows) -> tuple[int, ...]\n\n"
"The positions at which every row (a tuple) holds the same value: the very same object, or a\n"
"str, int or bytes of the same exact type that compares equal. Such a value binds the same way\n"
"in every row; floats and other types count only when identical (0.0 and -0.0 are equal but\n"
"store differently). An empty list, or rows of different lengths, share nothing.");

static int
same_value(PyObject *a, PyObject *b)
{
    if (a == b) {
        return 1;
    }
    if (Py_TYPE(a) != Py_TYPE(b) || !(PyUnicode_CheckExact(a) || PyLong_CheckExact(a) || PyBytes_CheckExact(a))) {
        return 0;
    }
    return PyObject_RichCompareBool(a, b, Py_EQ);
}

static PyObject *
shared_columns(PyObject *self, PyObject *rows)
{
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a list of tuples");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    if (n == 0) {
        return PyTuple_New(0);
    }
    PyObject *first = PyList_GET_ITEM(rows, 0);
    if (!PyTuple_Check(first)) {
        PyErr_SetString(PyExc_TypeError, "rows must be tuples");
        return NULL;
    }
    Py_ssize_t width = PyTuple_GET_SIZE(first);
    for (Py_ssize_t i = 1; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_Check(row)) {
            PyErr_SetString(PyExc_TypeError, "rows must be tuples");
            return NULL;
        }
        if (PyTuple_GET_SIZE(row) != width) {
            return PyTuple_New(0);
        }
    }
    PyObject *found = PyList_New(0);
    if (found == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < width; k++) {
        PyObject *value = PyTuple_GET_ITEM(first, k);
        int shared = 1;
        for (Py_ssize_t i = 1; i < n && shared; i++) {
            shared = same_value(value, PyTuple_GET_ITEM(PyList_GET_ITEM(rows, i), k));
            if (shared < 0) {
                Py_DECREF(found);
                return NULL;
            }
        }
        if (shared) {
            PyObject *at = PyLong_FromSsize_t(k);
            if (at == NULL || PyList_Append(found, at) < 0) {
                Py_XDECREF(at);
                Py_DECREF(found);
                return NULL;
            }
            Py_DECREF(at);
        }
    }
    PyObject *result = PyList_AsTuple(found);
    Py_DECREF(found);
    return result;
}

/* A group new to this batch: its list in `groups` (made if new there too), its index in `local`,
 * and zeroed accumulators. Returns the index, or -1 with an exception set. The lists are
 * borrowed: `groups` holds them for the call. */
static Py_ssize_t
add_group(PyObject *groups, PyObject *local, PyObject *key, Py_ssize_t width, PyObject ***lists,
          long long **acc, Py_ssize_t *n, Py_ssize_t *cap)
{
    PyObject *sums = PyDict_GetItemWithError(groups, key);  /* borrowed */
    if (sums != NULL && (!PyList_CheckExact(sums) || PyList_GET_SIZE(sums) != width)) {
        PyErr_SetString(PyExc_TypeError, "into's sums must be lists of the measures, rows and rows priced");
        return -1;
    }
    if (sums == NULL) {
        if (PyErr_Occurred() || (sums = PyList_New(width)) == NULL) {
            return -1;
        }
        for (Py_ssize_t m = 0; m < width; m++) {
            PyList_SET_ITEM(sums, m, PyLong_FromLong(0));
        }
        /* A list of numbers holds no reference back: left out of the cyclic collector, as a tuple of
         * numbers is, so a write's tens of thousands of groups add nothing to its full collections. */
        PyObject_GC_UnTrack(sums);
        int failed = PyDict_SetItem(groups, key, sums);
        Py_DECREF(sums);  /* the dict holds it */
        if (failed < 0) {
            return -1;
        }
    }
    if (*n == *cap) {
        Py_ssize_t grown = *cap ? *cap * 2 : 256;
        PyObject **l = PyMem_Realloc(*lists, sizeof(PyObject *) * grown);
        if (l == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *lists = l;
        long long *a = PyMem_Realloc(*acc, sizeof(long long) * grown * width);
        if (a == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *acc = a;
        *cap = grown;
    }
    PyObject *index = PyLong_FromSsize_t(*n);
    if (index == NULL || PyDict_SetItem(local, key, index) < 0) {
        Py_XDECREF(index);
        return -1;
    }
    Py_DECREF(index);
    (*lists)[*n] = sums;
    memset(*acc + *n * width, 0, sizeof(long long) * width);
    return (*n)++;
}

static const unsigned long long pow10_u64[20] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL, 1000000000ULL,
    10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL, 100000000000000ULL,
    1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL, 1000000000000000000ULL,
    10000000000000000000ULL,
};

/* round_half_even(text * 10**scale) for a Decimal's str() of at most 18 significant digits,
 * into *out; 0 if the text is anything else (NaN, more digits, a result past 64 bits). */
static int
parse_scaled(const char *p, Py_ssize_t n, int scale, long long *out)
{
    const char *end = p + n;
    int negative = 0, digits = 0, fraction = 0, seen_point = 0, seen_digit = 0;
    unsigned long long coef = 0;
    long exponent = 0;
    if (p < end && (*p == '-' || *p == '+')) {
        negative = *p++ == '-';
    }
    for (; p < end && ((*p >= '0' && *p <= '9') || *p == '.'); p++) {
        if (*p == '.') {
            if (seen_point) {
                return 0;
            }
            seen_point = 1;
            continue;
        }
        seen_digit = 1;
        fraction += seen_point;
        if (coef == 0 && *p == '0') {
            continue;  /* leading zeros are not significant */
        }
        if (++digits > 18) {
            return 0;
        }
        coef = coef * 10 + (unsigned long long)(*p - '0');
    }
    if (!seen_digit) {
        return 0;
    }
    if (p < end && (*p == 'E' || *p == 'e')) {
        int exp_negative = 0, exp_digits = 0;
        p++;
        if (p < end && (*p == '-' || *p == '+')) {
            exp_negative = *p++ == '-';
        }
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (++exp_digits > 6) {
                return 0;
            }
            exponent = exponent * 10 + (*p - '0');
        }
        if (!exp_digits) {
            return 0;
        }
        if (exp_negative) {
            exponent = -exponent;
        }
    }
    if (p != end) {
        return 0;
    }
    long shift = exponent - fraction + scale;
    unsigned long long magnitude;
    if (coef == 0) {
        magnitude = 0;
    } else if (shift >= 0) {
        if (shift > 18 || coef > (unsigned long long)LLONG_MAX / pow10_u64[shift]) {
            return 0;
        }
        magnitude = coef * pow10_u64[shift];
    } else if (shift < -19) {
        magnitude = 0;  /* coef < 10**18: below a twentieth of a unit, which rounds to 0 */
    } else {
        unsigned long long div = pow10_u64[-shift], half = div / 2;
        unsigned long long q = coef / div, r = coef % div;
        magnitude = q + (r > half || (r == half && (q & 1)));
    }
    if (magnitude > (unsigned long long)LLONG_MAX) {
        return 0;
    }
    *out = negative ? -(long long)magnitude : (long long)magnitude;
    return 1;
}

PyDoc_STRVAR(scaled_doc,
"scaled(values, scale, decimal, fallback) -> list\n\n"
"int(value.scaleb(scale).to_integral_value()) of each `decimal` instance (rounding half to even,\n"
"the default context's rounding), 0 for a zero one, None for None; any other value, and a\n"
"Decimal of more than 18 significant digits or outside 64 bits, goes to fallback(value).");

static PyObject *
scaled(PyObject *self, PyObject *args)
{
    PyObject *values, *decimal, *fallback;
    int scale;
    if (!PyArg_ParseTuple(args, "O!iOO:scaled", &PyList_Type, &values, &scale, &decimal, &fallback)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *result = PyList_New(n);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(values, i), *item = NULL;
        if (value == Py_None) {
            item = Py_NewRef(Py_None);
        } else if ((PyObject *)Py_TYPE(value) == decimal) {
            int truth = PyObject_IsTrue(value);
            if (truth < 0) {
                goto fail;
            }
            if (!truth) {
                item = PyLong_FromLong(0);
            } else {
                PyObject *text = PyObject_Str(value);
                if (text == NULL) {
                    goto fail;
                }
                Py_ssize_t size;
                const char *chars = PyUnicode_AsUTF8AndSize(text, &size);
                long long v;
                if (chars == NULL) {
                    Py_DECREF(text);
                    goto fail;
                }
                if (parse_scaled(chars, size, scale, &v)) {
                    item = PyLong_FromLongLong(v);
                }
                Py_DECREF(text);
                if (item == NULL && !PyErr_Occurred()) {
                    item = PyObject_CallOneArg(fallback, value);
                }
            }
        } else {
            item = PyObject_CallOneArg(fallback, value);
        }
        if (item == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(result, i, item);
    }
    return result;
fail:
    Py_DECREF(result);
    return NULL;
}

PyDoc_STRVAR(group_sums_doc,
"group_sums(rows, start_at, dims_at, measures_at, cost_index, day_seconds, day_of=None, into=None) -> dict\n\n"
"Rows summed per (day, dims): {(day, (row[d] for d in dims_at)): [*sums, rows, rows priced]}.\n"
"`day` is row[start_at] floored to a multiple of `day_seconds`, or day_of[row[start_at]] when\n"
"`day_of` is a dict (PostgreSQL's rows carry datetimes); sums are of row[m] for m in\n"
"measures_at, except that the measure at `cost_index` skips None (unpriced) and counts the\n"
"rows it summed as 'rows priced'. With `into` (a dict of such lists), rows are added to its sums\n"
"and `into` is returned.");

static PyObject *
group_sums(PyObject *self, PyObject *args)
{
    PyObject *rows, *dims_at, *measures_at, *day_of = Py_None, *into = Py_None;
    Py_ssize_t start_at, cost_index;
    long long day_seconds;
    if (!PyArg_ParseTuple(args, "O!nO!O!nL|OO:group_sums", &PyList_Type, &rows, &start_at, &PyTuple_Type, &dims_at,
                          &PyTuple_Type, &measures_at, &cost_index, &day_seconds, &day_of, &into)) {
        return NULL;
    }
    if (into != Py_None && !PyDict_CheckExact(into)) {
        PyErr_SetString(PyExc_TypeError, "into must be a dict or None");
        return NULL;
    }
    if (day_of != Py_None && !PyDict_Check(day_of)) {
        PyErr_SetString(PyExc_TypeError, "day_of must be a dict or None");
        return NULL;
    }
    Py_ssize_t ndims = PyTuple_GET_SIZE(dims_at), nmeas = PyTuple_GET_SIZE(measures_at);
    if (day_seconds < 1 || cost_index < 0 || cost_index >= nmeas) {
        PyErr_SetString(PyExc_ValueError, "bad day_seconds or cost_index");
        return NULL;
    }
    Py_ssize_t max_at = start_at;
    Py_ssize_t *dims = PyMem_Malloc(sizeof(Py_ssize_t) * (ndims + nmeas + 1));
    if (dims == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t *meas = dims + ndims;
    for (Py_ssize_t i = 0; i < ndims + nmeas; i++) {
        PyObject *at = i < ndims ? PyTuple_GET_ITEM(dims_at, i) : PyTuple_GET_ITEM(measures_at, i - ndims);
        dims[i] = PyLong_AsSsize_t(at);
        if (dims[i] < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "column positions must not be negative");
            }
            PyMem_Free(dims);
            return NULL;
        }
        if (dims[i] > max_at) {
            max_at = dims[i];
        }
    }
    PyObject *groups = into == Py_None ? PyDict_New() : Py_NewRef(into);
    /* This batch's groups: key -> index into `lists` and `acc`. Integer measures are summed in
     * 64-bit accumulators (no int object per addition), others and overflows into the lists. */
    PyObject *local = PyDict_New();
    PyObject **lists = NULL;
    long long *acc = NULL;
    Py_ssize_t nlocal = 0, cap = 0, width = nmeas + 2;
    if (groups == NULL || local == NULL) {
        goto fail;
    }
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) <= max_at) {
            PyErr_SetString(PyExc_TypeError, "rows must be tuples with every column named");
            goto fail;
        }
        PyObject *day;
        if (day_of != Py_None) {
            day = PyDict_GetItemWithError(day_of, PyTuple_GET_ITEM(row, start_at));
            if (day == NULL) {
                if (!PyErr_Occurred()) {
                    PyErr_SetObject(PyExc_KeyError, PyTuple_GET_ITEM(row, start_at));
                }
                goto fail;
            }
            Py_INCREF(day);
        } else {
            long long start = PyLong_AsLongLong(PyTuple_GET_ITEM(row, start_at));
            if (start == -1 && PyErr_Occurred()) {
                goto fail;
            }
            long long rem = start % day_seconds;
            if (rem < 0) {
                rem += day_seconds;  /* Python's floor modulo */
            }
            day = PyLong_FromLongLong(start - rem);
        }
        PyObject *key = PyTuple_New(2);
        PyObject *dimvals = PyTuple_New(ndims);
        if (key == NULL || dimvals == NULL || day == NULL) {
            Py_XDECREF(key);
            Py_XDECREF(dimvals);
            Py_XDECREF(day);
            goto fail;
        }
        for (Py_ssize_t d = 0; d < ndims; d++) {
            PyTuple_SET_ITEM(dimvals, d, Py_NewRef(PyTuple_GET_ITEM(row, dims[d])));
        }
        PyTuple_SET_ITEM(key, 0, day);
        PyTuple_SET_ITEM(key, 1, dimvals);
        Py_ssize_t at;
        PyObject *found = PyDict_GetItemWithError(local, key);  /* borrowed */
        if (found != NULL) {
            at = PyLong_AsSsize_t(found);
        } else if (PyErr_Occurred() || (at = add_group(groups, local, key, width, &lists, &acc, &nlocal, &cap)) < 0) {
            Py_DECREF(key);
            goto fail;
        }
        Py_DECREF(key);
        PyObject *sums = lists[at];
        long long *totals = acc + at * width;
        int priced = 1;
        for (Py_ssize_t m = 0; m < nmeas; m++) {
            PyObject *value = PyTuple_GET_ITEM(row, meas[m]);
            if (m == cost_index && value == Py_None) {
                priced = 0;
                continue;
            }
            if (PyLong_CheckExact(value)) {
                int overflow = 0;
                long long v = PyLong_AsLongLongAndOverflow(value, &overflow), sum;
                if (!overflow && !__builtin_add_overflow(totals[m], v, &sum)) {  /* sum is wrapped on overflow */
                    totals[m] = sum;
                    continue;
                }
            }
            PyObject *total = PyNumber_Add(PyList_GET_ITEM(sums, m), value);
            if (total == NULL) {
                goto fail;
            }
            PyObject *old = PyList_GET_ITEM(sums, m);
            PyList_SET_ITEM(sums, m, total);
            Py_DECREF(old);
        }
        totals[nmeas] += 1;
        totals[nmeas + 1] += priced;
    }
    /* Each group's 64-bit totals into its list. */
    for (Py_ssize_t g = 0; g < nlocal; g++) {
        for (Py_ssize_t m = 0; m < width; m++) {
            long long v = acc[g * width + m];
            if (v == 0) {
                continue;
            }
            PyObject *add = PyLong_FromLongLong(v);
            PyObject *total = add == NULL ? NULL : PyNumber_Add(PyList_GET_ITEM(lists[g], m), add);
            Py_XDECREF(add);
            if (total == NULL) {
                goto fail;
            }
            PyObject *old = PyList_GET_ITEM(lists[g], m);
            PyList_SET_ITEM(lists[g], m, total);
            Py_DECREF(old);
        }
    }
    PyMem_Free(dims);
    PyMem_Free(lists);
    PyMem_Free(acc);
    Py_DECREF(local);
    return groups;
fail:
    PyMem_Free(dims);
    PyMem_Free(lists);
    PyMem_Free(acc);
    Py_XDECREF(local);
    Py_XDECREF(groups);
    return NULL;
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS, rows_doc},
    {"blake2b_16", py_blake2b_16, METH_O, blake2b_16_doc},
    {"blake2b_16_column", blake2b_16_column, METH_VARARGS, blake2b_16_column_doc},
    {"scaled", scaled, METH_VARARGS, scaled_doc},
    {"flatten", flatten, METH_VARARGS, flatten_doc},
    {"shared_columns", shared_columns, METH_O, shared_columns_doc},
    {"group_sums", group_sums, METH_VARARGS, group_sums_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_rowbuild",
    "The store's per-row work in C (see collector/core/store.py).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__rowbuild(void)
{
    return PyModule_Create(&module);
}
