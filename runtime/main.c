/* main.c: the sluice command line (being built up this session). */
#include <stdio.h>
int main(void) { puts("sluice " SL_VERSION); return 0; }
