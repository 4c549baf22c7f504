"""Summarise an ncu source-page CSV (ncu -i rep --page source --csv --print-source sass):
warp-stall samples by reason and by SASS opcode. Usage: python3 ncu-stalls.py src.csv"""
import csv,sys,collections
rows=list(csv.reader(open(sys.argv[1])))
hdr=rows[1]; data=rows[2:]
idx={h:i for i,h in enumerate(hdr)}
stall_cols=[h for h in hdr if h.startswith('stall_') and '(Not' not in h]
tot=collections.Counter(); byop=collections.defaultdict(collections.Counter)
total_samples=0; inst=collections.Counter()
for r in data:
    if len(r)<len(hdr): continue
    src=r[idx['Source']].strip()
    op=src.split()[0] if not src.startswith('@') else src.split()[1]
    op=op.split('.')[0]
    try: n=int(r[idx['Warp Stall Sampling (All Samples)']])
    except: continue
    total_samples+=n
    inst[op]+=int(r[idx['Instructions Executed']] or 0)
    for c in stall_cols:
        v=int(r[idx[c]] or 0)
        if v: tot[c]+=v; byop[op][c]+=v
print("total samples",total_samples)
for c,v in tot.most_common(10): print("%-28s %6.1f%%"%(c,100*v/total_samples))
print("by opcode (share of samples, top stalls):")
opt=sorted(byop.items(), key=lambda kv:-sum(kv[1].values()))
for op,cn in opt[:14]:
    s=sum(cn.values()); print("%-10s %5.1f%%  inst %8d  "%(op,100*s/total_samples,inst[op]) + ", ".join("%s %.1f%%"%(k[6:],100*v/total_samples) for k,v in cn.most_common(4)))
