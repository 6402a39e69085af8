/*
 * error_test.c - unit suite for the error module: fab_strerror, fab_errname,
 * fab_errmsg and fab_version.
 *
 * A user prints these texts in logs and bindings map codes by name, so every
 * code must have its own text and its exact "FAB_<NAME>" name, and no input,
 * however wrong, may crash these calls.
 */
#include "unit.h"

#include <limits.h>

struct code {
	int code;
	const char *name; /* "FAB_EAGAIN" */
	const char *text; /* the table's text */
};

static const struct code codes[] = {
#define UT_CODE(name, val, text) {FAB_##name, "FAB_" #name, text},
	FAB_ERRNO_MAP(UT_CODE)
#undef UT_CODE
};
#define NCODES ((int)(sizeof codes / sizeof codes[0]))

/* Codes that are not FAB_E* values. */
static const int bogus[] = {1, 2, 14, 100, -15, -99, -1000, 12345, INT_MAX, INT_MIN, INT_MIN + 1};
#define NBOGUS ((int)(sizeof bogus / sizeof bogus[0]))

START_TEST(t_table_complete)
{
	/* The table has all fourteen codes of DESIGN §3, negative and distinct. */
	ck_assert_int_eq(NCODES, 14);
	for (int i = 0; i < NCODES; i++) {
		ck_assert_int_lt(codes[i].code, 0);
		for (int j = 0; j < i; j++)
			ck_assert_int_ne(codes[i].code, codes[j].code);
	}
	ck_assert_int_eq(FAB_EAGAIN, -1);
	ck_assert_int_eq(FAB_ESYS, -14);
}
END_TEST

START_TEST(t_strerror_each)
{
	for (int i = 0; i < NCODES; i++) {
		const char *s = fab_strerror(codes[i].code);
		ck_assert_msg(s != NULL, "fab_strerror(%s) is NULL", codes[i].name);
		ck_assert_msg(s[0] != '\0', "fab_strerror(%s) is empty", codes[i].name);
		ck_assert_msg(strcmp(s, codes[i].text) == 0, "fab_strerror(%s) = \"%s\", want \"%s\"",
			      codes[i].name, s, codes[i].text);
		ck_assert_msg(strstr(s, "nknown") == NULL, "fab_strerror(%s) = \"%s\" says unknown",
			      codes[i].name, s);
	}
}
END_TEST

START_TEST(t_strerror_distinct)
{
	for (int i = 0; i < NCODES; i++)
		for (int j = 0; j < i; j++)
			ck_assert_msg(strcmp(fab_strerror(codes[i].code),
					     fab_strerror(codes[j].code)) != 0,
				      "%s and %s share the text \"%s\"", codes[i].name,
				      codes[j].name, fab_strerror(codes[i].code));
}
END_TEST

START_TEST(t_errname_each)
{
	for (int i = 0; i < NCODES; i++) {
		const char *n = fab_errname(codes[i].code);
		ck_assert_msg(n != NULL, "fab_errname(%d) is NULL", codes[i].code);
		ck_assert_str_eq(n, codes[i].name);
	}
	/* Spot checks against the literal names a binding hard-codes. */
	ck_assert_str_eq(fab_errname(FAB_ECLOSED), "FAB_ECLOSED");
	ck_assert_str_eq(fab_errname(FAB_EAGAIN), "FAB_EAGAIN");
	ck_assert_str_eq(fab_errname(-14), "FAB_ESYS");
}
END_TEST

START_TEST(t_unknown_codes)
{
	for (int i = 0; i < NBOGUS; i++) {
		const char *s = fab_strerror(bogus[i]);
		ck_assert_msg(s != NULL, "fab_strerror(%d) is NULL", bogus[i]);
		ck_assert_msg(s[0] != '\0', "fab_strerror(%d) is empty", bogus[i]);
		for (int j = 0; j < NCODES; j++)
			ck_assert_msg(strcmp(s, codes[j].text) != 0,
				      "fab_strerror(%d) = \"%s\", the text of %s", bogus[i], s,
				      codes[j].name);
		const char *n = fab_errname(bogus[i]);
		ck_assert_msg(n != NULL, "fab_errname(%d) is NULL", bogus[i]);
		for (int j = 0; j < NCODES; j++)
			ck_assert_msg(strcmp(n, codes[j].name) != 0,
				      "fab_errname(%d) = \"%s\", a real code's name", bogus[i], n);
	}
	/* 0 is success, not an error: a text, never NULL. */
	ck_assert_ptr_nonnull(fab_strerror(0));
	ck_assert_ptr_nonnull(fab_errname(0));
}
END_TEST

START_TEST(t_version)
{
	const char *v = fab_version();
	ck_assert_ptr_nonnull(v);
	ck_assert_msg(v[0] != '\0', "fab_version is empty");
	char want[32];
	snprintf(want, sizeof want, "%d.%d.%d", FAB_VERSION_MAJOR, FAB_VERSION_MINOR,
		 FAB_VERSION_PATCH);
	ck_assert_msg(strstr(v, want) != NULL, "fab_version() = \"%s\" lacks \"%s\"", v, want);
	ck_assert_msg(strcmp(want, FAB_PROJECT_VERSION) == 0,
		      "fab.h says %s, the project (CMakeLists.txt, soname, fab.pc) %s", want,
		      FAB_PROJECT_VERSION);
	/* Stable: the same string every call. */
	ck_assert_str_eq(fab_version(), v);
}
END_TEST

START_TEST(t_errmsg_after_failure)
{
	/* Never NULL, even before any failure. */
	ck_assert_ptr_nonnull(fab_errmsg());
	fab_fabric *f = NULL;
	UT_RC(fab_fabric_open("bad/name", FAB_CREATE, &f), FAB_EINVAL);
	const char *m = fab_errmsg();
	ck_assert_ptr_nonnull(m);
	ck_assert_msg(m[0] != '\0', "fab_errmsg() is empty after a failed call");
}
END_TEST

static void *errmsg_thread(void *arg)
{
	(void)arg;
	/* A fresh thread has not failed yet: its message is not NULL. */
	const char *m = fab_errmsg();
	return (void *)(uintptr_t)(m != NULL);
}

START_TEST(t_errmsg_thread)
{
	fab_fabric *f = NULL;
	UT_RC(fab_fabric_open("", 0, &f), FAB_EINVAL);
	pthread_t th;
	void *ok = NULL;
	ck_assert_int_eq(pthread_create(&th, NULL, errmsg_thread, NULL), 0);
	ck_assert_int_eq(pthread_join(th, &ok), 0);
	ck_assert_msg(ok != NULL, "fab_errmsg() is NULL in a new thread");
	ck_assert_ptr_nonnull(fab_errmsg());
}
END_TEST

static Suite *error_suite(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("error");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, t_table_complete);
	tcase_add_test(tc, t_strerror_each);
	tcase_add_test(tc, t_strerror_distinct);
	tcase_add_test(tc, t_errname_each);
	tcase_add_test(tc, t_unknown_codes);
	tcase_add_test(tc, t_version);
	tcase_add_test(tc, t_errmsg_after_failure);
	tcase_add_test(tc, t_errmsg_thread);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ut_main(error_suite(), "err");
}
