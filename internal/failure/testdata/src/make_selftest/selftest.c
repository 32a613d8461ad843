/* A self-test in the style of reference crypto code: known-answer vectors. */
#include <stdio.h>
#include <string.h>

static unsigned digest(const char *s) {
	unsigned h = 2166136261u;
	for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

int main(void) {
	static const struct { const char *in; unsigned want; } vectors[] = {
		{"", 0x811c9dc5u}, {"a", 0xe40c292cu}, {"abc", 0x12345678u},
	};
	for (unsigned i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		unsigned got = digest(vectors[i].in);
		if (got != vectors[i].want) {
			printf("vector %u: FAIL: digest mismatch (got %08x, want %08x)\n", i, got, vectors[i].want);
			return 1;
		}
		printf("vector %u: ok\n", i);
	}
	puts("ok");
	return 0;
}
