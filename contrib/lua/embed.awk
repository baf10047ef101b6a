# Writes the C table of include/redis_scripts.h from contrib/lua/*.lua
# (make build/gen/redis_scripts.c): each file's text as one string literal.
BEGIN { print "/* Generated from contrib/lua by contrib/lua/embed.awk: do not edit. */"
	print "#include \"redis_scripts.h\""
	print "const struct redis_script redis_scripts[] = {" }
FNR == 1 { if (n++) print "\t},"; name = FILENAME; sub(/^.*\//, "", name); sub(/\.lua$/, "", name)
	printf "\t{ \"%s\",\n", name }
{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); printf "\t\"%s\\n\"\n", $0 }
END { if (n) print "\t},"; print "};"; printf "const size_t redis_nscripts = %d;\n", n }
